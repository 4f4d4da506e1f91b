"""A bare relay under seg_node's name: the transport floor that `seg_tool bench-node` reports.

For every camera frame it receives (raw, read as a CDR view like the node does) it publishes
a mono8 image of the frame's size with the frame's header on that camera's ``labels`` topic,
and does nothing else: no decode, resize, inference or other outputs. Its e2e latency is
what the middleware and rclpy cost on this machine for one camera frame in and one labels
image out, the part of seg_node's latency no change inside the node can remove.

Run as ``python -m seg_node.tools.relay --ros-args [-p cameras:=[a,b]] [-r image:=...]``.
"""

import sys
from functools import partial

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from seg_node.core.heap import keep_freed_memory
from seg_node.core.image_cdr import read_image
from seg_node.ros.cameras import image_name, output_topic
from seg_node.ros.messages import OutputImage
from seg_node.ros.qos import input_qos, output_qos


class Relay(Node):
    """Answers each camera frame with a zero mono8 image of its size on ``labels``."""

    def __init__(self) -> None:
        """Subscribe every camera of parameter ``cameras`` (as seg_node names them)."""
        super().__init__('seg_node')
        cameras = self.declare_parameter('cameras', ['']).value
        self.outputs = []
        for camera, name in enumerate(cameras):
            labels = OutputImage('mono8', 1, np.uint8)
            publisher = self.create_publisher(Image, output_topic(name, 'labels'),
                                              output_qos(1))
            self.outputs.append((labels, publisher))
            self.create_subscription(Image, image_name(name), partial(self._relay, camera),
                                     input_qos('reliable', 1), raw=True)

    def _relay(self, camera: int, buffer: bytes) -> None:
        msg = read_image(buffer)
        labels, publisher = self.outputs[camera]
        labels.prepare(msg.header, msg.height, msg.width)
        publisher.publish(labels.msg)


def main(args: list[str] | None = None) -> int:
    """Relay until SIGINT; exit 0."""
    keep_freed_memory()  # as seg_node: the floor should not pay page faults the node does not
    rclpy.init(args=args)
    relay = Relay()
    executor = SingleThreadedExecutor()
    executor.add_node(relay)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    executor.shutdown()
    relay.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
