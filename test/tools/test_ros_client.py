"""seg_node as a separate process: start-up errors, SIGINT, the demo and the e2e bench."""

import subprocess
import sys

import numpy as np
import pytest

from seg_node.tools.bench import bench_e2e
from seg_node.core.classes import load_classes
from seg_node.evaluation.dataset import load_split
from seg_node.tools.demo import run_demo
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.evaluation.metrics import ConfusionMatrix
from seg_node.tools.ros_client import NodeProcess, prepare_environment, sample_dir


def start_node(*parameters: str) -> subprocess.CompletedProcess:
    prepare_environment()
    command = [sys.executable, '-m', 'seg_node.ros.node', '--ros-args']
    for parameter in parameters:
        command += ['-p', parameter]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('content, message, progress_lines', [
    (None, 'does not exist', 0),  # a parameter error: refused before configure
    (b'this is not an onnx model', 'cannot load ONNX model', 1),
])
def test_missing_or_corrupt_model_exits_with_one_line(tmp_path, content, message,
                                                      progress_lines):
    model = tmp_path / 'model.onnx'
    if content is not None:
        model.write_bytes(content)
    result = start_node(f'model:={model}')
    assert result.returncode == 1
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1 + progress_lines and 'Traceback' not in result.stderr
    assert all('[INFO]' in line and 'configuring' in line for line in output[:-1])
    assert '[FATAL]' in output[-1] and message in output[-1]


def test_demo_serves_every_sample_frame_and_exits_cleanly(tmp_path, tiny_model):
    summary = run_demo(tmp_path / 'out', tiny_model, repeats=1)
    sample = load_split(sample_dir(), 'val')
    assert summary['frames'] == len(sample.images) and summary['exit_status'] == 0
    assert len(list((tmp_path / 'out').glob('*_overlay.png'))) == len(sample.images)
    backend = OnnxRuntimeBackend(tiny_model)
    expected = ConfusionMatrix(load_classes().num_classes)
    for image, label in zip(sample.images, sample.labels, strict=True):
        expected.update(label, backend.infer(image).labels)
    np.testing.assert_array_equal(summary['matrix'], expected.matrix)


def test_bench_e2e_reports_side_by_side_latencies(tiny_model):
    result = bench_e2e(tiny_model, frames=4, threads=1)
    assert result['frames'] == 4 and result['lost'] == 0 and result['node_exit_status'] == 0
    assert result['frame_size'] == [360, 480]
    assert result['e2e_ms']['p50'] > 0 and result['bare_onnxruntime_ms']['p50'] > 0
    assert result['ratio_p50'] == pytest.approx(
        result['e2e_ms']['p50'] / result['bare_onnxruntime_ms']['p50'], abs=1e-3)


def test_sigint_exits_zero_without_traceback(tiny_model):
    prepare_environment()
    with NodeProcess({'model': str(tiny_model)}) as node:
        lines = []
        while not any('serving' in line for line in lines):
            line = node.process.stdout.readline()
            assert line, f'seg_node ended early: {lines}'
            lines.append(line)
        assert node.stop() == 0
        output = ''.join(lines) + node.process.stdout.read()
    assert 'Traceback' not in output and 'KeyboardInterrupt' not in output
