"""The node's cameras: topic names and each camera's output messages and publishers.

Camera ``''`` is the single camera of old: input ``image``, outputs ``~/labels``, ...;
camera ``front`` reads ``front/image`` and publishes ``~/front/labels``, ... (input names
are relative, so namespaces and remappings apply as usual; compressed transport adds
``/compressed`` to the resolved input topic).
"""

import re
from collections.abc import Callable, Sequence

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image

from seg_node.core import image_codec
from seg_node.core.errors import ConfigError
from seg_node.core.inference.base import SegResult
from seg_node.core.render import Renderer
from seg_node.core.stage_times import StageTimes
from seg_node.ros.messages import copy_header, OutputImage

_CAMERA_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*')


def check_cameras(cameras: Sequence[str]) -> tuple[str, ...]:
    """Validate the ``cameras`` parameter: [''] alone, or distinct relative ROS names.

    Raises:
        ConfigError: empty list, a bad or repeated name, or '' beside named cameras.

    """
    cameras = tuple(cameras)
    if cameras == ('',):
        return cameras
    bad = [name for name in cameras if not _CAMERA_NAME.fullmatch(name)]
    if not cameras or bad or len(set(cameras)) != len(cameras):
        raise ConfigError(
            f'parameter cameras={list(cameras)} is invalid; give [""] for one camera on '
            '"image", or distinct names such as [front, left] (letters, digits, _ and /, '
            'starting with a letter)')
    return cameras


def image_name(camera: str) -> str:
    """Return camera ``camera``'s relative input name: 'image' or '<camera>/image'."""
    return f'{camera}/image' if camera else 'image'


def output_topic(camera: str, output: str) -> str:
    """Return the private topic of ``output`` (e.g. 'labels') for camera ``camera``."""
    return f'~/{camera}/{output}' if camera else f'~/{output}'


class CameraOutputs:
    """One camera's reusable output messages and their publishers."""

    def __init__(self, create_publisher: Callable[..., object], camera: str,
                 class_names: Sequence[str], qos: QoSProfile) -> None:
        """Create the publishers under :func:`output_topic` of ``camera``.

        Args:
            create_publisher: the node's (lifecycle) publisher factory, called as
                ``create_publisher(message_type, topic, qos)``.
            camera: the camera's name ('' for the single default camera).
            class_names: one ``class_confidence/<name>`` output per class.
            qos: the outputs' QoS profile.

        """
        self.labels = OutputImage('mono8', 1, np.uint8)
        self.confidence = OutputImage('32FC1', 1, np.float32)
        self.color = OutputImage('rgb8', 3, np.uint8)
        self.overlay = OutputImage('rgb8', 3, np.uint8)
        self.classes = [OutputImage('32FC1', 1, np.float32) for _ in class_names]
        self.compressed = CompressedImage(format='mono8; png compressed')

        def publisher(message_type: type, output: str) -> object:
            return create_publisher(message_type, output_topic(camera, output), qos)
        self.labels_pub = publisher(Image, 'labels')
        self.confidence_pub = publisher(Image, 'confidence')
        self.color_pub = publisher(Image, 'color')
        self.overlay_pub = publisher(Image, 'overlay')
        self.compressed_pub = publisher(CompressedImage, 'labels/compressed')
        self.class_pubs = [publisher(Image, f'class_confidence/{name}')
                           for name in class_names]

    def publishers(self) -> list:
        """Return every publisher of this camera (to destroy them at cleanup)."""
        return [self.labels_pub, self.confidence_pub, self.color_pub, self.overlay_pub,
                self.compressed_pub, *self.class_pubs]

    def wants_confidence(self) -> bool:
        """Return whether anyone subscribes ``confidence``."""
        return self.confidence_pub.get_subscription_count() > 0

    def wanted_classes(self) -> list[int]:
        """Return the indices of the classes whose probability map has a subscriber."""
        return [index for index, pub in enumerate(self.class_pubs)
                if pub.get_subscription_count()]

    def destination(self, header: object, height: int, width: int) -> SegResult:
        """Return the labels and confidence message views to write this frame's outputs into.

        Args:
            header: the camera frame's header (stamp, frame_id), copied into the outputs.
            height: the camera frame's height.
            width: the camera frame's width.

        """
        return SegResult(self.labels.prepare(header, height, width),
                         self.confidence.prepare(header, height, width))

    def publish(self, result: SegResult, rgb: np.ndarray, header: object,
                renderer: Renderer, times: StageTimes) -> None:
        """Publish the outputs someone subscribes; labels always.

        Args:
            result: outputs written through :meth:`destination` (probabilities (K, H, W)
                float32 when a class map is subscribed).
            rgb: (H, W, 3) uint8 camera frame, for ``overlay``.
            header: the camera frame's header.
            renderer: colours for ``color`` and ``overlay``.
            times: receives the ``publish`` stage time.

        """
        with times.time('publish'):
            height, width = result.labels.shape
            self.labels_pub.publish(self.labels.msg)
            if result.confidence is not None and self.wants_confidence():
                self.confidence_pub.publish(self.confidence.msg)
            if result.probabilities is not None:
                for index in self.wanted_classes():
                    output = self.classes[index]
                    np.copyto(output.prepare(header, height, width),
                              result.probabilities[index])
                    self.class_pubs[index].publish(output.msg)
            want_overlay = self.overlay_pub.get_subscription_count() > 0
            if want_overlay or self.color_pub.get_subscription_count():
                color = renderer.colorize(result.labels,
                                          self.color.prepare(header, height, width))
                self.color_pub.publish(self.color.msg)
                if want_overlay:
                    renderer.overlay(rgb, color, self.overlay.prepare(header, height, width))
                    self.overlay_pub.publish(self.overlay.msg)
            if self.compressed_pub.get_subscription_count():
                copy_header(self.compressed, header)
                self.compressed.data = image_codec.encode_compressed(result.labels, 'png')
                self.compressed_pub.publish(self.compressed)
