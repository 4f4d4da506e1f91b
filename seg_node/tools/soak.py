"""`seg_tool soak`: seg_node as its own process, fed real CamVid frames at a fixed rate.

For minutes on end; per period it reports frames served, dropped and rejected, the node's
memory and the end-to-end latency (publish -> ~/labels received).

:class:`CameraClient` and :func:`process_memory_mb` are also what the hostile-input tests
drive the node with.
"""

import threading
import time
from pathlib import Path

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from seg_node import CAMERA_TOPIC
from seg_node.core.errors import ConfigError, SegNodeError
from seg_node.evaluation.dataset import load_split
from seg_node.evaluation.scoring import latency_percentiles
from seg_node.tools.bench import machine
from seg_node.tools.ros_client import FrameClient, live_session, sample_dir, stamp_key, wait_until

LABELS_TOPIC = '/seg_node/labels'
# The node's /diagnostics counters, as the keys of the reports.
COUNTERS = {'frames_in': 'received', 'frames_served': 'served', 'frames_dropped': 'dropped',
            'frames_rejected': 'rejected'}


def process_memory_mb(pid: int) -> dict[str, float]:
    """Return a process's resident memory now (VmRSS) and at its peak (VmHWM), in MB."""
    values = {}
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            key, _, rest = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                values['rss_mb' if key == 'VmRSS' else 'peak_rss_mb'] = round(
                    int(rest.split()[0]) / 1024, 1)
    return values


class CameraClient(Node):
    """Publishes camera messages; records which were answered on ~/labels, and how fast.

    Label messages are not kept (a soak would hold gigabytes): only their stamps and
    latencies. The node's latest /diagnostics counters are kept in ``counters``.
    """

    def __init__(self, message_type: type = Image, topic: str = CAMERA_TOPIC,
                 depth: int = 1, **kwargs: object) -> None:
        """Create a reliable camera publisher keeping ``depth`` messages, and the listeners."""
        super().__init__('seg_node_camera_client', **kwargs)
        reliable = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.camera = self.create_publisher(message_type, topic, reliable)
        self._lock = threading.Lock()
        self._sent: dict[tuple[int, int], float] = {}  # stamp -> send time, until answered
        self.answered: list[tuple[int, int]] = []
        self.latencies_s: list[float] = []
        self.counters: dict[str, int] = {}
        self.counters_time = 0.0  # perf_counter() when ``counters`` arrived
        self.create_subscription(Image, LABELS_TOPIC, self._on_labels, QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)

    def connected(self, node_name: str = 'seg_node') -> bool:
        """Return whether ``node_name`` subscribes the camera topic and publishes labels."""
        return (any(info.node_name == node_name for info in
                    self.get_subscriptions_info_by_topic(self.camera.topic_name))
                and self.count_publishers(LABELS_TOPIC) > 0)

    def publish(self, msg: Image | CompressedImage, index: int) -> tuple[int, int]:
        """Stamp ``msg`` as frame ``index``, note the time and publish it; return the stamp."""
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1_000_000 + index, 0
        stamp = stamp_key(msg.header)
        with self._lock:
            self._sent[stamp] = time.perf_counter()
        self.camera.publish(msg)
        return stamp

    def take_latencies(self) -> list[float]:
        """Return and forget the latencies (s) recorded since the last call."""
        with self._lock:
            latencies, self.latencies_s = self.latencies_s, []
        return latencies

    def _on_labels(self, msg: Image) -> None:
        received = time.perf_counter()
        stamp = stamp_key(msg.header)
        with self._lock:
            sent = self._sent.pop(stamp, None)
            if sent is not None:  # not another node's, nor an answer twice
                self.answered.append(stamp)
                self.latencies_s.append(received - sent)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith('seg_node:'):
                values = {kv.key: kv.value for kv in status.values}
                self.counters = {name: int(values[key]) for key, name in COUNTERS.items()}
                self.counters_time = time.perf_counter()

    def settled(self, since: float) -> bool:
        """Return whether counters sent after ``since`` account for every frame received."""
        counts = self.counters
        return self.counters_time > since and counts['received'] == sum(
            counts[name] for name in ('served', 'dropped', 'rejected'))


def camera_frames(data: Path, limit: int, size: tuple[int, int]) -> list[Image]:
    """Return rgb8 Image messages of real CamVid val frames resized to (height, width)."""
    images = load_split(data, 'val', limit).images
    if not images:
        raise ConfigError(f'no val frames in {data}; give a CamVid-format folder (--data)')
    height, width = size
    return [FrameClient.frame(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA))
            for rgb in images]


def _period_report(index: int, end_s: float, sent: int, client: CameraClient, pid: int,
                   all_latencies_s: list[float]) -> dict:
    """Report one period; its latencies are moved from ``client`` to ``all_latencies_s``."""
    latencies = client.take_latencies()
    all_latencies_s.extend(latencies)
    latency = latency_percentiles(latencies)
    return {'period': index, 'end_s': round(end_s, 1), 'sent': sent,
            'answered': len(client.answered), **client.counters,
            'latency_p50_ms': latency['p50'], 'latency_p99_ms': latency['p99'],
            **process_memory_mb(pid)}


def _slope_per_minute(times_s: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` per minute (0 for fewer than two points)."""
    if len(values) < 2:
        return 0.0
    return round(float(np.polyfit(np.asarray(times_s) / 60.0, values, 1)[0]), 2)


def soak(model: Path, minutes: float, rate: float, size: tuple[int, int], threads: int = 2,
         data: Path | None = None, limit: int = 30, period_s: float = 60.0,
         timeout: float = 60.0) -> dict:
    """Run seg_node for ``minutes`` at ``rate`` frames/s of (height, width) CamVid frames.

    Returns:
        The settings, one report per ``period_s`` (frames sent and answered so far, the node's
        own counters, latency p50/p99 of the period in ms, RSS and peak RSS in MB) and a
        summary: totals, the RSS trend in MB per minute after the first period, and the
        node's exit status.

    Raises:
        ConfigError: a non-positive duration, rate or period, or no frames to send.
        SegNodeError: the node exited or did not connect within ``timeout`` seconds.

    """
    if minutes <= 0 or rate <= 0 or period_s <= 0 or min(size) < 1:
        raise ConfigError(f'soak needs positive --minutes ({minutes}), --rate ({rate}), '
                          f'--period ({period_s}) and --size ({list(size)})')
    frames = camera_frames(data or sample_dir(), limit, size)
    total = round(minutes * 60.0 * rate)
    periods: list[dict] = []
    latencies_s: list[float] = []
    with live_session({'model': str(model), 'num_threads': threads,
                       'input_reliability': 'reliable'}) as session:
        client = CameraClient(context=session.context)
        session.executor.add_node(client)
        pid = session.node.process.pid
        if not wait_until(client.connected, timeout, session.node):
            raise SegNodeError(f'seg_node did not connect within {timeout:.0f} s')
        start_memory = process_memory_mb(pid)
        started = time.perf_counter()
        for index in range(total):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            client.publish(frames[index % len(frames)], index)
            end_s = (len(periods) + 1) * period_s
            if (index + 1) / rate >= end_s and index + 1 < total:
                session.node.check_alive()
                periods.append(_period_report(len(periods), end_s, index + 1, client, pid,
                                              latencies_s))
        # the last answers, then a /diagnostics message (1 Hz) counting every frame
        last_sent = time.perf_counter()
        wait_until(lambda: client.settled(last_sent + 0.2), 10.0, session.node)
        periods.append(_period_report(len(periods), total / rate, total, client, pid,
                                      latencies_s))
        end_memory = process_memory_mb(pid)
        counters = dict(client.counters)
        answered = len(client.answered)
        exit_status = session.node.stop()
    later = periods[1:] or periods
    return {
        'benchmark': 'soak', 'model': str(model), 'threads': threads, 'minutes': minutes,
        'rate_hz': rate, 'frame_size': list(size), 'frames_sent': total,
        'frames_answered': answered, 'node_counters': counters,
        'lost_before_the_node': total - counters.get('received', 0),
        'latency_ms': latency_percentiles(latencies_s),
        'start_rss_mb': start_memory['rss_mb'], 'end_rss_mb': end_memory['rss_mb'],
        'peak_rss_mb': end_memory['peak_rss_mb'],
        'rss_trend_mb_per_min': _slope_per_minute([p['end_s'] for p in later],
                                                  [p['rss_mb'] for p in later]),
        'periods': periods, 'node_exit_status': exit_status, **machine()}
