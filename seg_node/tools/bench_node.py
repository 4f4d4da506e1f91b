"""`seg_tool bench-node`: the node's own cost per frame, with a near-free network.

A contract-following ONNX whose "inference" is a Cast and a Div (built here) isolates what
the node itself spends: receiving and converting frames, resizing, the hand-offs and
publishing. Each row (cameras x size x rate) starts seg_node as its own process (the
camera driver / node split of the car, shipped Fast DDS profile unless
``FASTDDS_DEFAULT_PROFILES_FILE`` says otherwise), publishes every camera at the rate with
reliable QoS and records, per frame, publish -> ``labels`` received. The node's CPU time
comes from /proc/PID/stat; its per-stage breakdown from its /diagnostics.
"""

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from onnx import helper, TensorProto
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from seg_node import CAMERA_TOPIC
from seg_node.core.classes import load_classes
from seg_node.core.errors import ConfigError, SegNodeError
from seg_node.core.image_cdr import read_image
from seg_node.core.inference.base import CONFIDENCE, LABELS, PROBABILITIES
from seg_node.core.inference.contract import (INPUT_NAME, META_ARCH, META_CLASS_NAMES,
                                              META_INFERENCE_SIZE)
from seg_node.core.stage_times import diagnostic_key, STAGES
from seg_node.evaluation.dataset import load_split
from seg_node.evaluation.scoring import latency_percentiles
from seg_node.tools.bench import machine
from seg_node.tools.ros_client import (NodeProcess, prepare_environment, PROFILE_VARIABLE,
                                       sample_dir, wait_until)

NULL_INFERENCE_SIZE = (360, 480)
WARMUP_S = 1.0
DRAIN_S = 1.0
NODE_NAME = 'seg_node'


@dataclass(frozen=True)
class Row:
    """One benchmark row: ``cameras`` cameras of ``height`` x ``width`` rgb8 at ``rate`` Hz."""

    cameras: int
    width: int
    height: int
    rate: float

    @staticmethod
    def parse(text: str) -> 'Row':
        """Parse ``CAMERASxWIDTHxHEIGHT@RATE``, e.g. ``4x640x480@30``.

        Raises:
            ConfigError: malformed text or non-positive values.

        """
        try:
            shape, rate = text.split('@')
            cameras, width, height = (int(v) for v in shape.lower().split('x'))
            row = Row(cameras, width, height, float(rate))
        except ValueError as err:
            raise ConfigError(f'bench-node row {text!r} is invalid; give '
                              'CAMERASxWIDTHxHEIGHT@RATE, e.g. 4x640x480@30') from err
        if min(row.cameras, row.width, row.height) < 1 or row.rate <= 0:
            raise ConfigError(f'bench-node row {text!r} needs positive counts and rate')
        return row


DEFAULT_ROWS = (Row(1, 640, 480, 30.0), Row(1, 1920, 1080, 30.0), Row(4, 640, 480, 30.0))


def build_null_model(path: Path, num_classes: int | None = None,
                     inference_size: tuple[int, int] = NULL_INFERENCE_SIZE) -> Path:
    """Write a near-free ONNX of the seg_node contract to ``path``.

    labels = uint8(R / 25.6), confidence = R / 255 and probabilities = confidence tiled over
    the K classes, where R is the red channel: the right names, types and shapes at the
    cost of a Cast and a Div per pixel. Class names (the bundled ones) and the inference
    size go into the metadata like `seg_tool export` writes them.
    """
    names = load_classes().names
    num_classes = num_classes or len(names)
    dims = ['batch', 'height', 'width']
    nodes = [
        helper.make_node('Slice', [INPUT_NAME, 'red_start', 'red_end', 'channel_axis'],
                         ['red']),
        helper.make_node('Squeeze', ['red', 'channel_axis'], ['red_plane']),
        helper.make_node('Cast', ['red_plane'], ['red_float'], to=TensorProto.FLOAT),
        helper.make_node('Div', ['red_float', 'full_scale'], [CONFIDENCE]),
        helper.make_node('Div', ['red_float', 'label_step'], ['label_float']),
        helper.make_node('Cast', ['label_float'], [LABELS], to=TensorProto.UINT8),
        helper.make_node('Unsqueeze', [CONFIDENCE, 'class_axis'], ['confidence_1']),
        helper.make_node('Tile', ['confidence_1', 'class_repeats'], [PROBABILITIES]),
    ]
    constants = [
        helper.make_tensor('red_start', TensorProto.INT64, [1], [0]),
        helper.make_tensor('red_end', TensorProto.INT64, [1], [1]),
        helper.make_tensor('channel_axis', TensorProto.INT64, [1], [3]),
        helper.make_tensor('full_scale', TensorProto.FLOAT, [], [255.0]),
        helper.make_tensor('label_step', TensorProto.FLOAT, [], [256.0 / min(num_classes, 10)]),
        helper.make_tensor('class_axis', TensorProto.INT64, [1], [1]),
        helper.make_tensor('class_repeats', TensorProto.INT64, [4], [1, num_classes, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, 'null_segmentation',
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [*dims, 3])],
        [helper.make_tensor_value_info(LABELS, TensorProto.UINT8, dims),
         helper.make_tensor_value_info(CONFIDENCE, TensorProto.FLOAT, dims),
         helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT,
                                       ['batch', num_classes, 'height', 'width'])],
        constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    helper.set_model_props(model, {
        META_CLASS_NAMES: json.dumps(list(names[:num_classes])),
        META_INFERENCE_SIZE: f'{inference_size[0]}x{inference_size[1]}',
        META_ARCH: 'null'})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds process ``pid`` has used (all its threads)."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def camera_names(count: int) -> list[str]:
    """Return the bench's camera names: [''] (the node's default camera) or cam0, cam1, ..."""
    return [''] if count == 1 else [f'cam{index}' for index in range(count)]


class CameraRig(Node):
    """Reliable camera publishers and raw ``labels`` subscriptions, one pair per camera."""

    def __init__(self, cameras: list[str], context: rclpy.Context) -> None:
        """Create the topics; '' is the node's default camera (remapped to CAMERA_TOPIC)."""
        super().__init__('bench_node_cameras', context=context)
        reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.camera_publishers = [self.create_publisher(
            Image, f'/{name}/image' if name else CAMERA_TOPIC, reliable) for name in cameras]
        self.labels_topics = [f'/{NODE_NAME}/{name}/labels' if name else f'/{NODE_NAME}/labels'
                              for name in cameras]
        self._lock = threading.Lock()
        self.received: list[dict[int, tuple[float, tuple[int, int]]]] = [{} for _ in cameras]
        for camera, topic in enumerate(self.labels_topics):
            self.create_subscription(Image, topic, self._store(camera),
                                     QoSProfile(depth=10,
                                                reliability=ReliabilityPolicy.RELIABLE),
                                     raw=True)
        self.diagnostics: dict[str, str] = {}
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)

    def _store(self, camera: int):
        def store(buffer: bytes) -> None:
            now = time.perf_counter()
            labels = read_image(buffer)
            with self._lock:
                self.received[camera][labels.header.stamp.sec] = (
                    now, (labels.height, labels.width))
        return store

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f'{NODE_NAME}:'):
                self.diagnostics = {value.key: value.value for value in status.values}

    def connected(self) -> bool:
        """Return whether the node subscribes every camera reliably and publishes labels."""
        reliable = ReliabilityPolicy.RELIABLE
        return all(
            any(info.node_name == NODE_NAME and info.qos_profile.reliability == reliable
                for info in self.get_subscriptions_info_by_topic(publisher.topic_name))
            for publisher in self.camera_publishers) and all(
            self.count_publishers(topic) for topic in self.labels_topics)


def _frames(row: Row) -> list[Image]:
    """One rgb8 camera message per camera: a CamVid sample frame resized, shifted per camera."""
    sample = load_split(sample_dir(), 'val').images[0]
    messages = []
    for camera in range(row.cameras):
        rgb = np.roll(cv2.resize(sample, (row.width, row.height)), 7 * camera, axis=1)
        msg = Image(height=row.height, width=row.width, encoding='rgb8', step=3 * row.width)
        msg.data = rgb.tobytes()
        msg.header.frame_id = f'camera_{camera}'
        messages.append(msg)
    return messages


def run_row(row: Row, seconds: float, parameters: dict[str, object],
            module: str = 'seg_node.ros.node', timeout: float = 30.0) -> dict:
    """Serve ``row`` with one process of ``module`` for ``seconds``; return its measurements.

    ``module`` is seg_node, or :mod:`seg_node.tools.relay` for the row's transport floor;
    ``parameters`` are its node parameters (``cameras`` is added for several cameras).
    """
    names = camera_names(row.cameras)
    node_parameters = dict(parameters)
    if row.cameras > 1:
        node_parameters['cameras'] = '[' + ','.join(names) + ']'
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    rig = CameraRig(names, context)
    executor.add_node(rig)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    messages = _frames(row)
    try:
        with NodeProcess(node_parameters, module=module) as node:
            if not wait_until(rig.connected, timeout, node):
                raise SegNodeError(f'seg_node did not connect within {timeout:.0f} s')
            period = 1.0 / row.rate
            warmup = round(WARMUP_S * row.rate)
            total = warmup + round(seconds * row.rate)
            sent: list[list[float]] = [[] for _ in names]  # per camera, per frame
            cpu_start = 0.0
            started = time.perf_counter()
            for index in range(total):
                if index == warmup:
                    cpu_start = cpu_seconds(node.process.pid)
                for camera_sent, publisher, msg in zip(sent, rig.camera_publishers, messages,
                                                       strict=True):
                    msg.header.stamp.sec = index
                    camera_sent.append(time.perf_counter())  # as if each had its own driver
                    publisher.publish(msg)
                time.sleep(max(0.0, started + (index + 1) * period - time.perf_counter()))
            time.sleep(DRAIN_S)
            cpu_used = cpu_seconds(node.process.pid) - cpu_start
            diagnostics = dict(rig.diagnostics)
            exit_status = node.stop()
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)
        rig.destroy_node()
        rclpy.shutdown(context=context)
    return _summarise(row, names, warmup, sent, rig.received, cpu_used, diagnostics,
                      exit_status)


def _summarise(row: Row, names: list[str], warmup: int, sent: list[list[float]],
               received: list[dict[int, tuple[float, tuple[int, int]]]], cpu_used: float,
               diagnostics: dict[str, str], exit_status: int) -> dict:
    """Turn one row's raw timings into its JSON record."""
    offered = len(sent[0]) - warmup
    latencies, served = [], []
    for camera_sent, answers in zip(sent, received, strict=True):
        count = 0
        for index in range(warmup, len(camera_sent)):
            answer = answers.get(index)
            if answer is not None and answer[1] == (row.height, row.width):
                latencies.append(answer[0] - camera_sent[index])
                count += 1
        served.append(count)
    total_served = sum(served)
    mean_served = total_served / len(served)
    stages = {stage: float(diagnostics[diagnostic_key(stage)]) for stage in STAGES
              if diagnostic_key(stage) in diagnostics}
    return {
        'cameras': row.cameras, 'size': f'{row.width}x{row.height}', 'rate_hz': row.rate,
        'offered': offered * row.cameras, 'served': total_served,
        'served_fraction': round(total_served / (offered * row.cameras), 4),
        'served_per_camera': dict(zip(names, served, strict=True)),
        'max_camera_deviation_from_mean': (round(max(abs(s - mean_served) for s in served)
                                                 / mean_served, 4) if mean_served else None),
        'e2e_ms': latency_percentiles(latencies),
        'node_cpu_ms_per_frame': (round(1e3 * cpu_used / total_served, 3) if total_served
                                  else None),
        'stages_ms_per_frame': stages, 'node_exit_status': exit_status}


def bench_node(rows: list[Row], seconds: float = 8.0, model: Path | None = None,
               parameters: dict[str, object] | None = None,
               work_dir: Path | None = None, floor: bool = True) -> dict:
    """Run every row with a fresh seg_node process; None ``model``: build the near-free one.

    With ``floor`` each row first runs with the bare relay in the node's place; its served
    count and e2e go into the row as ``transport_floor``, and ``e2e_p50_over_floor_ms`` is
    what seg_node adds to it.
    """
    prepare_environment()
    if model is None:
        model = build_null_model((work_dir or Path('bench_node_work')) / 'null.onnx')
    parameters = {'num_threads': 2, **(parameters or {})}
    results = []
    for row in rows:
        relayed = run_row(row, seconds, {}, 'seg_node.tools.relay') if floor else None
        result = run_row(row, seconds, {'model': str(model), **parameters})
        if relayed is not None:
            result['transport_floor'] = {
                name: relayed[name] for name in ('served', 'e2e_ms', 'node_cpu_ms_per_frame')}
            result['e2e_p50_over_floor_ms'] = round(
                result['e2e_ms']['p50'] - relayed['e2e_ms']['p50'], 3)
        results.append(result)
    return {'benchmark': 'node', 'model': str(model), 'seconds_per_row': seconds,
            'node_parameters': parameters, 'camera_qos': 'reliable',
            'fastdds_profile': os.environ.get(PROFILE_VARIABLE, 'none'),
            'load_average_1min_at_start': round(os.getloadavg()[0], 2),
            'results': results, **machine()}


def format_node_table(result: dict) -> str:
    """Render bench_node's rows as a Markdown table."""
    lines = ['| cameras | size | rate | served | e2e p50 ms | e2e p99 ms | floor p50 ms '
             '| node CPU ms/frame | ' + ' | '.join(STAGES) + ' |',
             '|---' * (8 + len(STAGES)) + '|']
    for row in result['results']:
        latency = row['e2e_ms']
        floor = row.get('transport_floor')
        floor_p50 = f'{floor["e2e_ms"]["p50"]:.1f}' if floor else '-'
        stages = ' | '.join(f'{row["stages_ms_per_frame"][s]:.2f}'
                            if s in row['stages_ms_per_frame'] else '-' for s in STAGES)
        lines.append(f'| {row["cameras"]} | {row["size"]} | {row["rate_hz"]:g} Hz | '
                     f'{row["served"]}/{row["offered"]} | {latency["p50"]:.1f} | '
                     f'{latency["p99"]:.1f} | {floor_p50} | {row["node_cpu_ms_per_frame"]} '
                     f'| {stages} |')
    return '\n'.join(lines)
