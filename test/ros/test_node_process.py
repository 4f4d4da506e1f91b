"""seg_node as its own process: bad parameters, signals during start-up, topic resolution."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import wait_for
from seg_node.tools.ros_client import prepare_environment


def node_command(*arguments: str) -> list[str]:
    return [sys.executable, '-m', 'seg_node.ros.node', '--ros-args', *arguments]


def run_node(*arguments: str) -> subprocess.CompletedProcess:
    prepare_environment()
    return subprocess.run(node_command(*arguments), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('parameter, words', [
    ('overlay_alpha:=5.0', ('overlay_alpha=5.0', 'from 0.0 to 1.0')),
    ('overlay_alpha:=abc', ("overlay_alpha='abc'", 'from 0.0 to 1.0')),
    ('input_depth:=-1', ('input_depth=-1', 'integer from 1 to 100')),
    ('num_threads:=-3', ('num_threads=-3', 'integer from 0 to 256')),
    ('autostart:=maybe', ("autostart='maybe'", 'true or false')),
    ('latency_budget_ms:=-5.0', ('latency_budget_ms=-5.0', 'from 0.0 to 60000.0')),
    ('inference_size:=[100000,100000]', ('inference_size=[100000, 100000]',
                                         'at most 8294400 (3840x2160)')),
    ('inference_size:=[8,8]', ('inference_size=[8, 8]', 'at least 16 each')),
    ('inference_size:=[360]', ('inference_size=[360]', '[height, width]')),
    ('model:=/tmp', ("model='/tmp'", 'is a folder', '.onnx')),
    ('backend:=cuda', ("backend='cuda'", 'onnxruntime')),
    ('debayer:=nearest', ("debayer='nearest'", 'vng, bilinear, edge-aware')),
])
def test_bad_parameter_exits_1_with_one_line(tiny_model, parameter, words):
    arguments = ('-p', parameter) if parameter.startswith('model:=') else (
        '-p', f'model:={tiny_model}', '-p', parameter)
    result = run_node(*arguments)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and result.stdout == '', result.stderr
    assert '[FATAL]' in lines[0] and all(word in lines[0] for word in words), lines[0]


class Output:
    """Collects a process's merged output lines on a thread."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def text(self) -> str:
        self._thread.join(timeout=5)
        return ''.join(self.lines)


def imports_started(process: subprocess.Popen) -> bool:
    """Return whether the node's module runs: numpy, its first native import, is mapped."""
    maps = Path(f'/proc/{process.pid}/maps')
    return 'numpy' in maps.read_text() if maps.exists() else False


# (phase reached, extra delay in seconds) before the signal: during the imports, around
# rclpy.init and the node's construction, while the model loads, while serving.
MOMENTS = [('imports', 0.0), ('imports', 0.25), ('configuring', 0.0),
           ('serving', 0.0)]


@pytest.mark.parametrize('signal_number', [signal.SIGINT, signal.SIGTERM],
                         ids=['SIGINT', 'SIGTERM'])
@pytest.mark.parametrize('phase, delay', MOMENTS)
def test_signal_during_start_up_exits_0_without_traceback(tiny_model, signal_number, phase,
                                                          delay):
    prepare_environment()
    process = subprocess.Popen(node_command('-p', f'model:={tiny_model}'),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(process)
    try:
        reached = {'imports': lambda: imports_started(process),
                   'configuring': lambda: output.has('configuring'),
                   'serving': lambda: output.has('serving')}[phase]
        assert wait_for(reached, 30), output.text()
        time.sleep(delay)
        process.send_signal(signal_number)
        assert process.wait(15) == 0, output.text()
    finally:
        if process.poll() is None:
            process.kill()
    text = output.text()
    assert 'Traceback' not in text and 'Error' not in text, text


def test_compressed_transport_follows_the_image_remap(ros_context, tiny_model):
    from rclpy.node import Node
    prepare_environment()
    observer = ros_context.add(Node('observer', context=ros_context.context))
    process = subprocess.Popen(
        node_command('-r', 'image:=/cam', '-p', 'image_transport:=compressed',
                     '-p', f'model:={tiny_model}'),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(process)
    try:
        assert wait_for(lambda: any(
            info.node_name == 'seg_node' and info.topic_type == 'sensor_msgs/msg/CompressedImage'
            for info in observer.get_subscriptions_info_by_topic('/cam/compressed')), 30), (
            output.text())
        assert not observer.get_subscriptions_info_by_topic('/image/compressed')
        # the line follows the subscription (after the first QoS match)
        assert wait_for(lambda: output.has('serving: input compressed on /cam/compressed'), 5)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
