"""In-process node tests' helpers: a probe, camera frames and a started SegNode."""

import time

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from conftest import wait_for
from seg_node.ros.node import SegNode
from seg_node.tools.ros_client import FrameClient

BEST_EFFORT = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
RELIABLE = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)


def image_msg(rgb: np.ndarray, stamp_sec: int, encoding: str = 'rgb8') -> Image:
    """Build a camera Image of ``rgb`` in ``encoding`` stamped ``stamp_sec``."""
    msg = FrameClient.frame(rgb, encoding)
    msg.header.stamp.sec = stamp_sec
    return msg


class Probe(Node):
    """Publishes camera frames and records what the node publishes."""

    def __init__(self, context, qos: QoSProfile = RELIABLE,
                 publisher_qos: QoSProfile = BEST_EFFORT):
        super().__init__('probe', context=context)
        self.camera = self.create_publisher(Image, '/camera/image_raw', publisher_qos)
        self.compressed = self.create_publisher(CompressedImage,
                                                '/camera/image_raw/compressed', publisher_qos)
        self.received: dict[str, list] = {}
        self.qos = qos
        self.subscriptions_by_topic: dict = {}

    def listen(self, topic: str, message_type: type = Image) -> None:
        self.received[topic] = []
        self.subscriptions_by_topic[topic] = self.create_subscription(
            message_type, topic, self.received[topic].append, self.qos)

    def stop_listening(self, topic: str) -> None:
        self.destroy_subscription(self.subscriptions_by_topic.pop(topic))

    def last(self, topic: str, stamp_sec: int):
        matches = [m for m in self.received[topic] if m.header.stamp.sec == stamp_sec]
        return matches[-1] if matches else None


def start(ros_context, tiny_model, state: str = 'active', **parameters: object) -> SegNode:
    """Add a SegNode on /camera/image_raw with ``parameters``; wait until it is in ``state``."""
    overrides = [Parameter(name, value=value) for name, value in
                 {'model': str(tiny_model), 'num_threads': 2, **parameters}.items()]
    node = ros_context.add(SegNode(context=ros_context.context, parameter_overrides=overrides,
                                   cli_args=['--ros-args', '-r', 'image:=/camera/image_raw']))
    assert wait_for(lambda: node.lifecycle_state() == state, 30), node.lifecycle_state()
    return node


def send_until(probe: Probe, topic: str, msg, timeout: float = 15.0):
    """Publish ``msg`` repeatedly until ``topic`` has an output with its stamp."""
    stamp = msg.header.stamp.sec
    deadline = time.monotonic() + timeout
    publisher = probe.compressed if isinstance(msg, CompressedImage) else probe.camera
    while time.monotonic() < deadline:
        publisher.publish(msg)
        if wait_for(lambda: probe.last(topic, stamp) is not None, 0.5):
            return probe.last(topic, stamp)
    return None


@pytest.fixture(name='node')
def node_fixture(ros_context, tiny_model) -> SegNode:
    """Start the node on /camera/image_raw with the tiny model (import it to use ``node``)."""
    return start(ros_context, tiny_model)
