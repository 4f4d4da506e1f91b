"""score-live: score the running node's labels against ground truth under real transport.

A scorer node subscribes the node's ``~/labels`` and the ground-truth topic and pairs them by
header stamp (seg_node.evaluation.bags.StampPairing). While a bag plays (``ros2 bag play``, or
``--play`` which publishes the bag's image and label topics itself at the recorded rate), it
reports mIoU, frames the node dropped and, for frames it played itself, end-to-end latency.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import ReliabilityPolicy
from rosbags.serde import SerdeError
from sensor_msgs.msg import CompressedImage, Image

from seg_node.evaluation.bags import (CAMERA_TOPIC, CAMERA_TYPES, COMPRESSED_IMAGE, decode_label,
                                      deserialize, IMAGE, LABELS_TOPIC, open_bag, stamp_ns,
                                      StampPairing, topic_connections, TYPESTORE, warn_skipped)
from seg_node.core.classes import ClassList
from seg_node.core.errors import ConfigError, ImageError
from seg_node.ros.qos import choose_reliability, input_qos, output_qos

DEPTH = 50  # Queue depth of every scorer topic: nothing is lost to a slow callback.
PAIRING_CAPACITY = 100  # Frames each side may wait for its match.
QOS_SETTLE_S = 3.0  # The node re-checks its input QoS every second.
MESSAGE_TYPES = {IMAGE: Image, COMPRESSED_IMAGE: CompressedImage}


@dataclass
class LiveScores:
    """What score-live measured.

    Attributes:
        pairing: the scores and matching counts.
        frames_published: camera frames (distinct stamps) played, or seen on the camera
            topic; None if none were seen.
        labels_received: label images received from the node.
        dropped: published frames whose labels never came; None if none were seen.
        latencies_s: end-to-end latency of each played frame whose labels came back.
        corrupt: messages that could not be decoded.

    """

    pairing: StampPairing
    frames_published: int | None
    labels_received: int
    dropped: int | None
    latencies_s: list[float] = field(default_factory=list)
    corrupt: int = 0

    def counts(self) -> dict[str, int | None]:
        """Return the frame counts for the report (``frames`` = frames scored)."""
        return {'frames': self.pairing.scored, 'skipped': self.pairing.skipped,
                'frames_published': self.frames_published,
                'labels_received': self.labels_received, 'dropped': self.dropped,
                'corrupt': self.corrupt, 'unmatched_labels': self.pairing.unmatched_truth}


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` until true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class AdaptiveSubscription:
    """A subscription whose reliability follows the topic's publishers, like the node's input.

    The reliability comes from seg_node.ros.qos.choose_reliability and is re-checked every
    second; on a change the subscription is re-created.
    """

    def __init__(self, node: Node, message_type: type, topic: str,
                 callback: Callable[[Any], None], raw: bool = False) -> None:
        """Subscribe ``topic`` now and keep adapting (``raw``: callbacks get CDR bytes)."""
        self._node = node
        self._message_type = message_type
        self._topic = node.resolve_topic_name(topic)
        self._callback = callback
        self._raw = raw
        self._subscription = None
        self.reliability = ''
        self.adapt()
        node.create_timer(1.0, self.adapt)

    def adapt(self) -> None:
        """Re-subscribe if the publishers now call for another reliability."""
        publishers = self._node.get_publishers_info_by_topic(self._topic)
        reliability = choose_reliability(info.qos_profile.reliability for info in publishers)
        if reliability == self.reliability:
            return
        if self._subscription is not None:
            self._node.destroy_subscription(self._subscription)
        self._subscription = self._node.create_subscription(
            self._message_type, self._topic, self._callback, input_qos(reliability, DEPTH),
            raw=self._raw)
        self.reliability = reliability


class LiveScorer(Node):
    """Pairs the node's labels with ground truth by stamp and times played frames."""

    def __init__(self, classes: ClassList, label_topic: str, labels_topic: str = LABELS_TOPIC,
                 image_topic: str = CAMERA_TOPIC, playing: bool = False,
                 **kwargs: Any) -> None:
        """Subscribe the node's labels, the ground truth and, unless playing, the camera.

        Args:
            classes: the class file the node serves.
            label_topic: mono8 ground-truth topic.
            labels_topic: the node's ``~/labels``.
            image_topic: camera topic to count frames on (``.../compressed``:
                CompressedImage).
            playing: this scorer publishes the frames and ground truth itself (play_bag), so
                the ground truth comes reliably and the camera is not counted.
            **kwargs: rclpy Node options (e.g. ``context``).

        """
        super().__init__('seg_score_live', **kwargs)
        self._lock = threading.Lock()
        self.pairing = StampPairing(classes.num_classes, capacity=PAIRING_CAPACITY)
        self.labels_received = self.truths_received = self.corrupt = 0
        self.latencies_s: list[float] = []
        # Camera frame stamp -> when it was played (None: seen on the topic, not played).
        self.frames: dict[int, float | None] = {}
        self.labelled: set[int] = set()
        self.last_message = time.monotonic()
        self.labels_subscription = self.create_subscription(
            Image, labels_topic, self._on_labels, output_qos(DEPTH))
        self.truth: AdaptiveSubscription | None = None
        self.camera: AdaptiveSubscription | None = None
        if playing:  # Matches play_bag's reliable publisher from the start: nothing is lost.
            self.create_subscription(Image, label_topic, self._on_truth, output_qos(DEPTH))
            return
        self.truth = AdaptiveSubscription(self, Image, label_topic, self._on_truth)
        self._camera_type = (COMPRESSED_IMAGE if image_topic.endswith('/compressed')
                             else IMAGE)
        self.camera = AdaptiveSubscription(self, MESSAGE_TYPES[self._camera_type],
                                           image_topic, self._on_camera, raw=True)

    def _skip(self, err: Exception) -> None:
        with self._lock:
            self.corrupt += 1
            warn_skipped(self.corrupt, err)

    def _decode(self, msg: Image) -> np.ndarray | None:
        try:
            return decode_label(msg)
        except ImageError as err:
            self._skip(err)
            return None

    def _on_labels(self, msg: Image) -> None:
        received = time.monotonic()
        labels = self._decode(msg)
        stamp = stamp_ns(msg.header)
        with self._lock:
            self.labels_received += 1
            self.last_message = received
            published = self.frames.get(stamp)
            if published is not None and stamp not in self.labelled:
                self.latencies_s.append(received - published)
            self.labelled.add(stamp)
            if labels is not None:
                self.pairing.add_prediction(stamp, labels)

    def _on_truth(self, msg: Image) -> None:
        label = self._decode(msg)
        with self._lock:
            self.truths_received += 1
            self.last_message = time.monotonic()
            if label is not None:
                self.pairing.add_truth(stamp_ns(msg.header), label)

    def _on_camera(self, data: bytes) -> None:
        try:  # rosbags reads the header without copying the pixels.
            stamp = stamp_ns(TYPESTORE.deserialize_cdr(data, self._camera_type).header)
        except SerdeError as err:
            self._skip(err)
            return
        with self._lock:
            self.frames.setdefault(stamp, None)
            self.last_message = time.monotonic()

    def publishing(self, stamp: int) -> None:
        """Note that the camera frame with header ``stamp`` (ns) is being published now."""
        with self._lock:
            self.frames[stamp] = time.monotonic()

    def wait_for_node(self, camera: Publisher, truth: Publisher, timeout: float) -> None:
        """Wait until seg_node listens to ``camera`` and publishes labels.

        Then give its adaptive input QoS a moment to settle on this reliable publisher.

        Raises:
            ConfigError: no node appeared within ``timeout`` seconds.

        """
        def connected() -> bool:
            return (camera.get_subscription_count() > 0 and truth.get_subscription_count() > 0
                    and self.labels_subscription.get_publisher_count() > 0)

        def settled() -> bool:
            infos = self.get_subscriptions_info_by_topic(camera.topic_name)
            return (camera.get_subscription_count() >= len(infos) and all(
                info.qos_profile.reliability == ReliabilityPolicy.RELIABLE for info in infos))

        if not _wait_until(connected, timeout):
            raise ConfigError(
                f'no seg_node subscribed {camera.topic_name} and published '
                f'{self.labels_subscription.topic_name} within {timeout:g} s; start seg_node '
                f'remapped image:={camera.topic_name} first')
        _wait_until(settled, QOS_SETTLE_S)

    def wait_until_done(self, frames: int | None, truths: int | None, timeout: float) -> None:
        """Return once all played frames came back, or after ``timeout`` s of silence.

        Args:
            frames: label images to wait for; None: wait for silence only.
            truths: ground-truth images to wait for (with ``frames``).
            timeout: seconds without any message after which to stop.

        """
        def finished() -> bool:
            with self._lock:
                done = (frames is not None and self.labels_received >= frames
                        and self.truths_received >= truths)
                return done or time.monotonic() - self.last_message > timeout

        _wait_until(finished, float('inf'))

    def scores(self) -> LiveScores:
        """Finish pairing and return what was measured."""
        with self._lock:
            self.pairing.finish()
            published = len(self.frames) or None
            dropped = None if published is None else len(self.frames.keys() - self.labelled)
            return LiveScores(self.pairing, published, self.labels_received, dropped,
                              list(self.latencies_s), self.corrupt)


def play_bag(scorer: LiveScorer, bag: Path, image_topic: str, label_topic: str,
             timeout: float) -> tuple[int, int]:
    """Publish a bag's camera and ground-truth topics at the recorded rate.

    Messages are re-serialised as Kilted types (ROS 1 bags included) and published reliably,
    like ``ros2 bag play``.

    Returns:
        (camera frames, ground-truth images) published.

    Raises:
        BagError: unreadable bag or missing topic.
        ConfigError: no seg_node listens to ``image_topic``.

    """
    with open_bag(bag) as reader:
        cameras = topic_connections(reader, image_topic, CAMERA_TYPES)
        truths = topic_connections(reader, label_topic, (IMAGE,))
        camera = scorer.create_publisher(MESSAGE_TYPES[cameras[0].msgtype], image_topic,
                                         output_qos(DEPTH))
        truth = scorer.create_publisher(Image, label_topic, output_qos(DEPTH))
        scorer.wait_for_node(camera, truth, timeout)
        counts = {image_topic: 0, label_topic: 0}
        skipped = 0
        start: tuple[float, int] | None = None
        for connection, log_ns, rawdata in reader.messages(cameras + truths):
            try:
                msg = deserialize(reader, connection, rawdata)
            except ImageError as err:
                skipped += 1
                warn_skipped(skipped, err)
                continue
            start = start or (time.monotonic(), log_ns)
            time.sleep(max(0.0, start[0] + (log_ns - start[1]) / 1e9 - time.monotonic()))
            data = bytes(TYPESTORE.serialize_cdr(msg, connection.msgtype))
            if connection.topic == image_topic:
                scorer.publishing(stamp_ns(msg.header))
                camera.publish(data)
            else:
                truth.publish(data)
            counts[connection.topic] += 1
    return counts[image_topic], counts[label_topic]


def score_live(classes: ClassList, label_topic: str, image_topic: str = CAMERA_TOPIC,
               labels_topic: str = LABELS_TOPIC, play: Path | None = None,
               timeout: float = 10.0) -> LiveScores:
    """Score the running node's labels against ground truth until the stream ends.

    Args:
        classes: the class file the node serves.
        label_topic: mono8 ground-truth topic.
        image_topic: the node's camera topic (counted, or played with ``play``).
        labels_topic: the node's ``~/labels``.
        play: bag to publish ``image_topic`` and ``label_topic`` from; None: listen only
            (e.g. to ``ros2 bag play``).
        timeout: stop after this many seconds without a message (Ctrl-C stops too).

    Returns:
        The scores of what arrived.

    Raises:
        BagError: unreadable bag or missing topic.
        ConfigError: no seg_node listens to ``image_topic`` (with ``play``).

    """
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    try:
        scorer = LiveScorer(classes, label_topic, labels_topic, image_topic,
                            playing=play is not None, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(scorer)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        played = (None, None)
        try:
            if play is not None:
                played = play_bag(scorer, play, image_topic, label_topic, timeout)
            scorer.wait_until_done(*played, timeout)
        except KeyboardInterrupt:
            pass  # Report what arrived so far.
        finally:
            executor.shutdown()
            spinner.join()
            scorer.destroy_node()
        return scorer.scores()
    finally:
        rclpy.shutdown(context=context)
