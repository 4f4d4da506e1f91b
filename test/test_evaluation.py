"""`seg_tool evaluate` and its scoring loop: the node's resize path, latencies, bad sizes."""

import json

import numpy as np
import pytest

from conftest import CAMVID_FIXTURES
from seg_node.cli import main
from seg_node.evaluation import evaluate_frames, latency_percentiles
from seg_node.inference.base import SegResult
from seg_node.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.metrics import ConfusionMatrix
from seg_node.pipeline import Segmenter


def evaluate_json(tmp_path, tiny_model, *extra: str) -> dict:
    report = tmp_path / f'evaluate{len(extra)}.json'
    assert main(['evaluate', '--model', str(tiny_model), '--data', str(CAMVID_FIXTURES),
                 '--threads', '1', '--json', str(report), *extra]) == 0
    return json.loads(report.read_text())


def test_inference_size_scores_the_nodes_resize_path(tmp_path, tiny_model, camvid_pairs):
    """--inference-size scores exactly what the node publishes at that inference_size."""
    segmenter = Segmenter(OnnxRuntimeBackend(tiny_model, num_threads=1), (176, 240))
    expected = ConfusionMatrix(11)
    for image, label in camvid_pairs:
        labels = segmenter.segment(image, confidence=False).labels
        assert labels.shape == label.shape
        expected.update(label, labels)
    half = evaluate_json(tmp_path, tiny_model, '--inference-size', '176', '240')
    full = evaluate_json(tmp_path, tiny_model)
    assert half['inference_size'] == [176, 240] and full['inference_size'] == 'frame size'
    assert half['frames'] == full['frames'] == 3
    assert half['miou'] == pytest.approx(expected.scores().miou, abs=1e-6)
    assert half['miou'] != pytest.approx(full['miou'], abs=1e-4)


def test_too_small_inference_size_is_one_line_error(tiny_model, capsys):
    assert main(['evaluate', '--model', str(tiny_model), '--data', str(CAMVID_FIXTURES),
                 '--inference-size', '8', '240']) == 1
    error = capsys.readouterr().err
    assert error == ('seg_tool: error: inference size [8, 240] is invalid; give height and '
                     'width of at least 16 each\n')


def test_evaluate_frames_times_each_frame_and_ignores_void(camvid_pairs):
    image, label = camvid_pairs[0]

    class Perfect:
        def infer(self, frame, confidence=True, probabilities=False):
            assert frame is image and confidence is False
            return SegResult(np.where(label < 11, label, 0), None, None)

    matrix, latencies = evaluate_frames(Perfect().infer, [(image, label)] * 2, 11)
    assert len(latencies) == 2 and all(seconds >= 0 for seconds in latencies)
    assert matrix.scores().pixel_accuracy == 1.0
    assert matrix.matrix.sum() == 2 * int((label < 11).sum())
    assert latency_percentiles([0.001, 0.003])['p50'] == pytest.approx(2.0)
