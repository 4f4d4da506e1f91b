"""Drive seg_node over real ROS 2 topics: run it as a process, send frames, collect outputs.

Outputs are matched to frames by header stamp. Used by `seg_tool demo` and `seg_tool bench`.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from seg_node import CAMERA_TOPIC, config_file, FASTDDS_PROFILE_NAME, PACKAGE_DIR
from seg_node.core.errors import SegNodeError
from seg_node.core.image_codec import encode_rgb

PROFILE_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'


def stamp_key(header: object) -> tuple[int, int]:
    """Return a header's stamp as a hashable (sec, nanosec) pair."""
    return header.stamp.sec, header.stamp.nanosec


class NodeProcess:
    """seg_node in its own process (as on the car), stopped with SIGINT like `ros2 launch`."""

    def __init__(self, parameters: dict[str, object], image_topic: str = CAMERA_TOPIC,
                 env: dict[str, str] | None = None, module: str = 'seg_node.ros.node') -> None:
        """Describe the process; ``parameters`` are passed as ``-p name:=value``.

        ``module`` is the Python module run as the node (the bench's relay stands in for it).
        """
        self.command = [sys.executable, '-m', module, '--ros-args',
                        '-r', f'image:={image_topic}']
        for name, value in parameters.items():
            self.command += ['-p', f'{name}:={value}']
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> 'NodeProcess':
        """Start the node."""
        self.process = subprocess.Popen(self.command, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        return self

    def check_alive(self) -> None:
        """Raise SegNodeError with the node's output if it has exited."""
        if self.process.poll() is not None:
            output = self.process.stdout.read().strip()
            raise SegNodeError(f'seg_node exited with status {self.process.returncode}: '
                               f'{output.splitlines()[-1] if output else "no output"}')

    def stop(self, timeout: float = 15.0) -> int:
        """Send SIGINT and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __exit__(self, *exc_info: object) -> None:
        """Stop the node if it still runs."""
        self.stop()


class FrameClient(Node):
    """Publishes camera frames and records the node's outputs, keyed by header stamp."""

    def __init__(self, output_topics: list[str], camera_topic: str = CAMERA_TOPIC,
                 reliability: ReliabilityPolicy = ReliabilityPolicy.RELIABLE,
                 name: str = 'seg_node_client', **kwargs: object) -> None:
        """Create the camera publisher and one reliable subscription per output topic."""
        super().__init__(name, **kwargs)
        self.camera = self.create_publisher(Image, camera_topic,
                                            QoSProfile(depth=1, reliability=reliability))
        self._condition = threading.Condition()
        self.received: dict[str, dict[tuple[int, int], tuple[float, Image]]] = {}
        for topic in output_topics:
            self.received[topic] = {}
            self.create_subscription(Image, topic, self._callback(topic),
                                     QoSProfile(depth=10,
                                                reliability=ReliabilityPolicy.RELIABLE))

    def _callback(self, topic: str):
        def store(msg: Image) -> None:
            with self._condition:
                self.received[topic][stamp_key(msg.header)] = (time.perf_counter(), msg)
                self._condition.notify_all()
        return store

    def connected(self, node_name: str = 'seg_node') -> bool:
        """Return whether the node serves every output and its camera QoS has settled.

        Settled: ``node_name`` subscribes the camera with this client's reliability.
        """
        reliability = self.camera.qos_profile.reliability
        settled = any(info.node_name == node_name and info.qos_profile.reliability == reliability
                      for info in self.get_subscriptions_info_by_topic(self.camera.topic_name))
        return settled and all(self.count_publishers(topic) for topic in self.received)

    @staticmethod
    def frame(rgb: np.ndarray, encoding: str = 'rgb8') -> Image:
        """Build a camera Image (frame_id 'camera') from (H, W, 3) uint8 RGB."""
        raw = encode_rgb(rgb, encoding)
        msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                    step=raw.shape[1])
        msg.data = raw.tobytes()
        msg.header.frame_id = 'camera'
        return msg

    def publish(self, msg: Image, index: int) -> tuple[tuple[int, int], float]:
        """Stamp ``msg`` as frame ``index`` and publish it; return its stamp and send time."""
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1_000_000 + index, 0
        sent = time.perf_counter()
        self.camera.publish(msg)
        return stamp_key(msg.header), sent

    def send(self, rgb: np.ndarray, index: int, encoding: str = 'rgb8') -> tuple[
            tuple[int, int], float]:
        """Publish (H, W, 3) uint8 RGB as frame ``index``; return its stamp and send time."""
        return self.publish(self.frame(rgb, encoding), index)

    def wait(self, stamp: tuple[int, int], timeout: float) -> dict[str, tuple[float, Image]]:
        """Wait until every output topic has a message with ``stamp``; return those seen."""
        def complete() -> bool:
            return all(stamp in messages for messages in self.received.values())
        with self._condition:
            self._condition.wait_for(complete, timeout)
            return {topic: messages.pop(stamp) for topic, messages in self.received.items()
                    if stamp in messages}


def wait_until(condition, timeout: float, process: NodeProcess | None = None) -> bool:
    """Poll ``condition`` every 50 ms for ``timeout`` s, failing early if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process is not None:
            process.check_alive()
        time.sleep(0.05)
    return False


def image_array(msg: Image) -> np.ndarray:
    """View a mono8/rgb8/32FC1 Image message as (H, W) or (H, W, 3) numpy array."""
    dtype = np.float32 if msg.encoding == '32FC1' else np.uint8
    array = np.frombuffer(msg.data, dtype)
    shape = (msg.height, msg.width, 3) if msg.encoding == 'rgb8' else (msg.height, msg.width)
    return array.reshape(shape)


def sample_dir() -> Path:
    """Return the folder of bundled CamVid sample frames (CamVid layout)."""
    return PACKAGE_DIR / 'sample'


def prepare_environment() -> None:
    """Use a random local-only ROS domain and the shipped large-frame DDS profile.

    Values already set are kept (``FASTDDS_DEFAULT_PROFILES_FILE=none`` removes the profile:
    default transports); child processes inherit the result.
    """
    defaults = {'ROS_DOMAIN_ID': str(random.randint(1, 200)),
                'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
                PROFILE_VARIABLE: str(config_file(FASTDDS_PROFILE_NAME))}
    for name, value in defaults.items():
        if not os.environ.get(name):
            os.environ[name] = value
    if os.environ[PROFILE_VARIABLE] == 'none':
        del os.environ[PROFILE_VARIABLE]


class LiveSession:
    """A seg_node process plus one camera client in this process, on a private context."""

    def __init__(self, node: NodeProcess, context: rclpy.Context,
                 executor: SingleThreadedExecutor) -> None:
        """Hold the running node process and the spinning executor."""
        self.node = node
        self.context = context
        self.executor = executor
        self.client: FrameClient | None = None
        self.clients = 0

    def connect(self, output_topics: list[str],
                reliability: ReliabilityPolicy = ReliabilityPolicy.RELIABLE,
                timeout: float = 30.0) -> FrameClient:
        """Replace the camera client by one with ``reliability``; wait until it is served.

        Raises:
            SegNodeError: the node exited or did not connect within ``timeout`` seconds.
        """
        if self.client is not None:
            self.executor.remove_node(self.client)
            self.client.destroy_node()
        self.clients += 1
        self.client = FrameClient(output_topics, reliability=reliability,
                                  name=f'seg_node_client_{self.clients}', context=self.context)
        self.executor.add_node(self.client)
        if not wait_until(self.client.connected, timeout, self.node):
            raise SegNodeError(f'seg_node did not connect within {timeout:.0f} s')
        return self.client


@contextmanager
def live_session(parameters: dict[str, object]) -> Iterator[LiveSession]:
    """Start seg_node as a process with ``parameters`` beside a spinning client context."""
    prepare_environment()
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    session = None
    try:
        with NodeProcess(parameters) as node:
            session = LiveSession(node, context, executor)
            yield session
    finally:
        # Stop spinning and release the nodes before the context: a thread still inside
        # rcl at interpreter exit aborts the process.
        executor.shutdown()
        spinner.join(timeout=5.0)
        if session is not None and session.client is not None:
            session.client.destroy_node()
        rclpy.shutdown(context=context)


@contextmanager
def serving_node(parameters: dict[str, object], output_topics: list[str],
                 timeout: float = 30.0) -> Iterator[tuple[FrameClient, NodeProcess]]:
    """Start seg_node as a process and a connected reliable :class:`FrameClient`."""
    with live_session(parameters) as session:
        yield session.connect(output_topics, timeout=timeout), session.node
