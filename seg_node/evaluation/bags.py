"""Rosbag tooling without rclpy: make-bag, eval-bag and the bag I/O they share.

make-bag turns labelled frames into an evaluation bag; eval-bag scores a model on recorded
drives and writes its outputs back as a bag. Every bag goes through the ``rosbags`` library:
rosbag2 (sqlite3 or mcap) and ROS 1 ``.bag`` are read with AnyReader; bags are written as
rosbag2 with the Kilted type store, whose sensor_msgs and std_msgs definitions are identical
to Humble's and Jazzy's. Conversion, inference and scoring are the node's own code
(image_codec, Segmenter, ConfusionMatrix).
"""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import get_typestore, Stores
from tqdm import tqdm

from seg_node import CAMERA_TOPIC
from seg_node.core import image_codec
from seg_node.core.classes import ClassList
from seg_node.evaluation.dataset import read_label, read_rgb, split_pairs
from seg_node.core.errors import BagError, ConfigError, ImageError
from seg_node.evaluation.scoring import latency_percentiles
from seg_node.evaluation.metrics import ConfusionMatrix, format_table, scores_to_dict
from seg_node.core.pipeline import Segmenter
from seg_node.core.render import colorize

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
CAMERA_TYPES = (IMAGE, COMPRESSED_IMAGE)

CAMERA_INFO_TOPIC = '/camera/camera_info'
GROUND_TRUTH_TOPIC = '/camera/semantic_gt'
FRAME_ID = 'camera'
LABELS_TOPIC = '/seg_node/labels'
CONFIDENCE_TOPIC = '/seg_node/confidence'
COLOR_TOPIC = '/seg_node/color'

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
# rosbag2 format 8 is Jazzy's; Kilted reads it too (rosbags writes formats 8 and 9 only).
BAG_VERSION = 8
STORAGES = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
COMPRESSED_FORMATS = ('jpeg', 'png')
_WARNINGS = 5  # Corrupt messages reported one by one; later ones are only counted.
_LOG = logging.getLogger(__name__)

_Header = TYPESTORE.types['std_msgs/msg/Header']
_Time = TYPESTORE.types['builtin_interfaces/msg/Time']
_Image = TYPESTORE.types[IMAGE]
_CompressedImage = TYPESTORE.types[COMPRESSED_IMAGE]
_CameraInfo = TYPESTORE.types[CAMERA_INFO]
_RegionOfInterest = TYPESTORE.types['sensor_msgs/msg/RegionOfInterest']


def stamp_ns(header: Any) -> int:
    """Return a message header's stamp in integer nanoseconds (the key frames match on)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def make_header(stamp: int, frame_id: str = FRAME_ID) -> Any:
    """Return a std_msgs/Header with ``stamp`` nanoseconds."""
    seconds, nanoseconds = divmod(stamp, 1_000_000_000)
    return _Header(stamp=_Time(sec=seconds, nanosec=nanoseconds), frame_id=frame_id)


def image_msg(header: Any, pixels: np.ndarray, encoding: str) -> Any:
    """Wrap pixels in a sensor_msgs/Image.

    Args:
        header: the message header.
        pixels: (H, W) or (H, W, C) uint8, or (H, W) float32 for 32FC1, in ``encoding``'s
            layout (e.g. image_codec.encode_rgb rows reshaped to (H, W, bytes per pixel)).
        encoding: the ROS encoding name.

    """
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1).view(np.uint8)
    return _Image(header=header, height=height, width=width, encoding=encoding,
                  is_bigendian=image_codec.is_bigendian_flag(pixels.dtype),
                  step=rows.shape[1], data=rows.reshape(-1))


def camera_info_msg(header: Any, height: int, width: int) -> Any:
    """Return a sensor_msgs/CameraInfo of a nominal, distortion-free pinhole camera.

    The intrinsics are nominal, not a calibration (CamVid ships none): focal length =
    image width in pixels (about 53 degrees horizontal field of view), principal point at
    the image centre.
    """
    focal, centre_x, centre_y = float(width), (width - 1) / 2.0, (height - 1) / 2.0
    return _CameraInfo(
        header=header, height=height, width=width, distortion_model='plumb_bob',
        d=np.zeros(5), k=np.array([focal, 0.0, centre_x, 0.0, focal, centre_y, 0.0, 0.0, 1.0]),
        r=np.eye(3).ravel(),
        p=np.array([focal, 0.0, centre_x, 0.0, 0.0, focal, centre_y, 0.0, 0.0, 0.0, 1.0, 0.0]),
        binning_x=0, binning_y=0,
        roi=_RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def decode_label(msg: Any) -> np.ndarray:
    """Return the (H, W) uint8 class ids of a ground-truth mono8 Image or PNG CompressedImage.

    Raises:
        ImageError: not mono8 / single-channel 8-bit PNG (JPEG is refused: lossy compression
            changes class ids), or the message cannot be decoded.

    """
    if hasattr(msg, 'format'):
        return image_codec.decode_compressed_mono8(msg)
    if msg.encoding != 'mono8':
        raise ImageError(f'ground-truth image has encoding {msg.encoding!r}; publish class '
                         'ids as mono8')
    return np.ascontiguousarray(image_codec.decode_image(msg)[:, :, 0])


@contextmanager
def open_bag(path: Path) -> Iterator[AnyReader]:
    """Open a rosbag2 folder (sqlite3 or mcap) or a ROS 1 ``.bag`` file for reading.

    Raises:
        BagError: the path is missing or not a readable bag.

    """
    accepted = 'pass a rosbag2 folder (sqlite3 or mcap) or a ROS 1 .bag file'
    if not Path(path).exists():
        raise BagError(f'bag {path} does not exist; {accepted}')
    try:
        reader = AnyReader([Path(path)], default_typestore=TYPESTORE)
        reader.open()
    except (AnyReaderError, FileNotFoundError) as err:  # The latter: no metadata.yaml.
        raise BagError(f'cannot read bag {path} ({err}); {accepted}') from err
    try:
        yield reader
    finally:
        reader.close()


def topic_connections(reader: AnyReader, topic: str,
                      msgtypes: tuple[str, ...]) -> list[Connection]:
    """Return the bag's connections of ``topic``.

    Raises:
        BagError: the topic is absent (the message lists the bag's topics) or carries
            another type than ``msgtypes``.

    """
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections:
        topics = ', '.join(f'{name} ({info.msgtype})' for name, info in reader.topics.items())
        raise BagError(f'topic {topic} is not in the bag; pick one of its topics: '
                       f'{topics or "none"}')
    found = {c.msgtype for c in connections}
    if not found <= set(msgtypes):
        raise BagError(f'topic {topic} carries {", ".join(sorted(found))}; pick a topic of '
                       f'type {" or ".join(msgtypes)}')
    return connections


def deserialize(reader: AnyReader, connection: Connection, rawdata: bytes) -> Any:
    """Deserialize one bag message.

    Raises:
        ImageError: the bytes are corrupt (the message is skipped by the callers).

    """
    try:
        return reader.deserialize(rawdata, connection.msgtype)
    except AnyReaderError as err:
        raise ImageError(f'corrupt message on {connection.topic}: {err}') from err


def warn_skipped(count: int, err: Exception) -> None:
    """Log the ``count``-th skipped message; after a few, they are only counted."""
    if count <= _WARNINGS:
        more = '; further ones are only counted' if count == _WARNINGS else ''
        _LOG.warning('skipped message %d: %s%s', count, err, more)


class BagWriter:
    """Writes rosbag2 messages with Kilted definitions; use as a context manager."""

    def __init__(self, path: Path, storage: str = 'sqlite3') -> None:
        """Prepare ``path`` (a new folder) in ``storage`` 'sqlite3' or 'mcap'.

        Raises:
            BagError: unknown storage or the path exists.

        """
        if storage not in STORAGES:
            raise BagError(f'unknown bag storage {storage!r}; choose one of '
                           + ', '.join(STORAGES))
        try:
            self._writer = Writer(Path(path), version=BAG_VERSION,
                                  storage_plugin=STORAGES[storage])
        except WriterError as err:
            raise BagError(f'cannot write bag {path} ({err}); pass a new folder') from err
        self._connections: dict[str, Connection] = {}

    def __enter__(self) -> 'BagWriter':
        """Create the bag folder."""
        self._writer.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Finish the bag (also after an error, keeping what was written)."""
        self._writer.close()

    def write(self, topic: str, msgtype: str, msg: Any, log_ns: int) -> None:
        """Serialise ``msg`` as ``msgtype`` and record it at bag time ``log_ns``.

        rosbags serialises by attribute name, so a message read from any bag serialises as
        the Kilted type (a ROS 1 header's ``seq`` is left out).
        """
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            self._connections[topic] = connection
        self._writer.write(connection, log_ns, TYPESTORE.serialize_cdr(msg, msgtype))


def make_bag(source: Path, output: Path, split: str = 'val', rate: float = 10.0,
             limit: int | None = None, storage: str = 'sqlite3', encoding: str = 'rgb8',
             compressed: str | None = None, start_ns: int | None = None) -> int:
    """Write a labelled image sequence as an evaluation rosbag2.

    Frames go in image-name order, one every ``1 / rate`` seconds, each as the camera
    image, CameraInfo and mono8 ground truth with identical header stamps (also the bag
    time) and frame_id ``camera``.

    Args:
        source: CamVid-format folder or split file (see seg_node.evaluation.dataset.split_pairs).
        output: the new bag folder.
        split: split name when ``source`` is a folder.
        rate: frames per second.
        limit: at most this many frames.
        storage: 'sqlite3' or 'mcap'.
        encoding: raw image encoding (image_codec.ACCEPTED_ENCODINGS), on CAMERA_TOPIC.
        compressed: 'jpeg' or 'png' to write CompressedImage on CAMERA_TOPIC/compressed.
        start_ns: first stamp in nanoseconds; None: now.

    Returns:
        The number of frames written.

    Raises:
        ConfigError: bad rate, encoding or format, or unreadable frames.
        BagError: the bag cannot be written.

    """
    if rate <= 0:
        raise ConfigError(f'rate {rate} Hz is invalid; pass a positive frame rate')
    if encoding not in image_codec.ACCEPTED_ENCODINGS:
        raise ConfigError(f'encoding {encoding!r} is not accepted; choose one of '
                          + ', '.join(image_codec.ACCEPTED_ENCODINGS))
    if compressed not in (None, *COMPRESSED_FORMATS):
        raise ConfigError(f'compressed format {compressed!r} is not accepted; choose one of '
                          + ', '.join(COMPRESSED_FORMATS))
    pairs = sorted(split_pairs(Path(source), split), key=lambda pair: pair[0].name)[:limit]
    start = time.time_ns() if start_ns is None else start_ns
    with BagWriter(output, storage) as writer:
        for index, (image_path, label_path) in enumerate(tqdm(pairs, unit='frame',
                                                              disable=None)):
            stamp = start + round(index * 1e9 / rate)
            header = make_header(stamp)
            rgb = read_rgb(image_path)
            height, width = rgb.shape[:2]
            if compressed:
                data = np.frombuffer(image_codec.encode_compressed(rgb, compressed), np.uint8)
                camera = _CompressedImage(header=header, data=data,
                                          format=f'rgb8; {compressed} compressed bgr8')
                writer.write(f'{CAMERA_TOPIC}/compressed', COMPRESSED_IMAGE, camera, stamp)
            else:
                rows = image_codec.encode_rgb(rgb, encoding).reshape(height, width, -1)
                writer.write(CAMERA_TOPIC, IMAGE, image_msg(header, rows, encoding), stamp)
            writer.write(CAMERA_INFO_TOPIC, CAMERA_INFO,
                         camera_info_msg(header, height, width), stamp)
            writer.write(GROUND_TRUTH_TOPIC, IMAGE,
                         image_msg(header, read_label(label_path), 'mono8'), stamp)
    return len(pairs)


class StampPairing:
    """Scores predicted labels against ground truth with the identical header stamp.

    Either side may arrive first; the earlier one waits. With ``expected`` (the stamps that
    have ground truth) only predictions that will find it wait; otherwise each side keeps
    at most ``capacity`` waiting frames, the oldest giving way.

    Attributes:
        matrix: the confusion matrix of the scored frames.
        scored: frames scored.
        skipped: predictions without ground truth (or of another size), not scored.
        unmatched_truth: ground-truth frames whose prediction never came.

    """

    def __init__(self, num_classes: int, expected: set[int] | None = None,
                 capacity: int | None = None) -> None:
        """Create an empty pairing for ``num_classes`` classes."""
        self.matrix = ConfusionMatrix(num_classes)
        self.expected = expected
        self.capacity = capacity
        self.scored = self.skipped = self.unmatched_truth = 0
        self._predictions: dict[int, np.ndarray] = {}
        self._truths: dict[int, np.ndarray] = {}

    def add_prediction(self, stamp: int, labels: np.ndarray) -> None:
        """Offer a (H, W) uint8 prediction (copied if it has to wait)."""
        truth = self._truths.pop(stamp, None)
        if truth is not None:
            self._score(truth, labels)
        elif self.expected is not None and stamp not in self.expected:
            self.skipped += 1
        else:
            self.skipped += self._wait(self._predictions, stamp, labels.copy())

    def add_truth(self, stamp: int, label: np.ndarray) -> None:
        """Offer a (H, W) uint8 ground-truth label (void = ids >= K)."""
        prediction = self._predictions.pop(stamp, None)
        if prediction is not None:
            self._score(label, prediction)
        else:
            self.unmatched_truth += self._wait(self._truths, stamp, label)

    def finish(self) -> None:
        """Count whatever still waits as skipped or unmatched."""
        self.skipped += len(self._predictions)
        self.unmatched_truth += len(self._truths)
        self._predictions.clear()
        self._truths.clear()

    def _wait(self, waiting: dict[int, np.ndarray], stamp: int, frame: np.ndarray) -> int:
        """Queue ``frame``; return how many frames it displaced (same stamp, or the oldest)."""
        evicted = int(waiting.pop(stamp, None) is not None)
        if self.capacity is not None and len(waiting) >= self.capacity:
            del waiting[next(iter(waiting))]
            evicted += 1
        waiting[stamp] = frame
        return evicted

    def _score(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        if truth.shape != prediction.shape:
            self.skipped += 1
            _LOG.warning('ground truth %s and prediction %s differ in size; frame not scored',
                         truth.shape, prediction.shape)
            return
        self.matrix.update(truth, prediction)
        self.scored += 1


@dataclass
class BagEvaluation:
    """What eval-bag measured.

    Attributes:
        pairing: the scores and matching counts.
        camera_frames: camera messages in the bag.
        corrupt: camera or ground-truth messages that could not be decoded (skipped).
        latencies_s: inference time of each decoded frame, seconds.

    """

    pairing: StampPairing
    camera_frames: int = 0
    corrupt: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Return the frame counts for the report (``frames`` = frames scored)."""
        return {'frames': self.pairing.scored, 'skipped': self.pairing.skipped,
                'corrupt': self.corrupt, 'camera_frames': self.camera_frames,
                'unmatched_labels': self.pairing.unmatched_truth}


def _ground_truth_stamps(reader: AnyReader, connections: list[Connection]) -> set[int]:
    """Return the header stamps on the ground-truth topic (corrupt ones are left out)."""
    stamps = set()
    for connection, _, rawdata in reader.messages(connections):
        try:
            stamps.add(stamp_ns(deserialize(reader, connection, rawdata).header))
        except ImageError:
            continue  # Counted when the main pass meets it.
    return stamps


class _FrameScorer:
    """Segments each camera message, scores it and writes the outputs of eval-bag."""

    def __init__(self, segmenter: Segmenter, classes: ClassList, evaluation: BagEvaluation,
                 writer: BagWriter | None, debayer: str) -> None:
        self.segmenter = segmenter
        self.debayer = debayer
        self.lut = classes.color_lut()
        self.evaluation = evaluation
        self.writer = writer

    def camera(self, connection: Connection, log_ns: int, msg: Any) -> None:
        """Decode, segment and score one camera message; write its outputs if asked.

        Raises:
            ImageError: the frame cannot be decoded.

        """
        rgb = image_codec.decode(msg, self.debayer)
        started = time.perf_counter()
        result = self.segmenter.segment(rgb, confidence=self.writer is not None)
        self.evaluation.latencies_s.append(time.perf_counter() - started)
        self.evaluation.pairing.add_prediction(stamp_ns(msg.header), result.labels)
        if self.writer is None:
            return
        header = make_header(stamp_ns(msg.header), msg.header.frame_id)
        self.writer.write(connection.topic, connection.msgtype, msg, log_ns)
        self.writer.write(LABELS_TOPIC, IMAGE, image_msg(header, result.labels, 'mono8'),
                          log_ns)
        self.writer.write(CONFIDENCE_TOPIC, IMAGE,
                          image_msg(header, result.confidence, '32FC1'), log_ns)
        self.writer.write(COLOR_TOPIC, IMAGE,
                          image_msg(header, colorize(result.labels, self.lut), 'rgb8'), log_ns)


def evaluate_bag(bag: Path, segmenter: Segmenter, classes: ClassList, image_topic: str,
                 label_topic: str | None = None, output_bag: Path | None = None,
                 output_storage: str = 'sqlite3',
                 debayer: str = image_codec.DEBAYER_METHODS[0]) -> BagEvaluation:
    """Run the node's inference path on every camera frame of a bag, in bag order.

    Args:
        bag: rosbag2 folder or ROS 1 .bag.
        segmenter: from load_segmenter.
        classes: the class file matching the model.
        image_topic: sensor_msgs/Image (any accepted encoding) or CompressedImage topic.
        label_topic: ground truth (mono8 Image or PNG CompressedImage) matched to
            frames by identical header stamp.
        output_bag: new rosbag2 for the camera topic plus labels (mono8), confidence
            (32FC1) and colour (rgb8) with each camera frame's header.
        output_storage: 'sqlite3' or 'mcap' for ``output_bag``.
        debayer: demosaicing of Bayer frames, one of image_codec.DEBAYER_METHODS (the
            node's ``debayer`` parameter).

    Raises:
        BagError: unreadable bag, missing topic, unwritable output or an unknown
            ``debayer`` method.

    """
    if debayer not in image_codec.DEBAYER_METHODS:
        raise BagError(f'unknown demosaicing method {debayer!r}; choose one of '
                       + ', '.join(image_codec.DEBAYER_METHODS) + ' (--debayer)')
    if label_topic == image_topic:
        raise BagError(f'--label-topic and --image-topic are both {image_topic}; pass the '
                       'ground-truth topic as --label-topic')
    with open_bag(bag) as reader, ExitStack() as stack:
        cameras = topic_connections(reader, image_topic, CAMERA_TYPES)
        truths = topic_connections(reader, label_topic, CAMERA_TYPES) if label_topic else []
        pairing = StampPairing(classes.num_classes, _ground_truth_stamps(reader, truths))
        evaluation = BagEvaluation(pairing)
        writer = (stack.enter_context(BagWriter(output_bag, output_storage))
                  if output_bag else None)
        scorer = _FrameScorer(segmenter, classes, evaluation, writer, debayer)
        total = sum(c.msgcount for c in cameras + truths)
        for connection, log_ns, rawdata in tqdm(reader.messages(cameras + truths),
                                                total=total, unit='msg', disable=None):
            is_camera = connection.topic == image_topic
            evaluation.camera_frames += is_camera
            try:
                msg = deserialize(reader, connection, rawdata)
                if is_camera:
                    scorer.camera(connection, log_ns, msg)
                else:
                    pairing.add_truth(stamp_ns(msg.header), decode_label(msg))
            except ImageError as err:
                evaluation.corrupt += 1
                warn_skipped(evaluation.corrupt, err)
    pairing.finish()
    return evaluation


def report(matrix: ConfusionMatrix, classes: ClassList, counts: dict[str, int | None],
           latencies_s: list[float], latency_name: str) -> tuple[str, dict]:
    """Return the printed report and its JSON form.

    Args:
        matrix: confusion matrix of the scored frames.
        classes: class names for the per-class table.
        counts: frame counts, reported first (``frames`` = frames scored).
        latencies_s: latencies in seconds, summarised as p50/p99/mean milliseconds.
        latency_name: what the latency measures, e.g. 'inference latency'.

    Returns:
        (text, payload): the IoU table with counts and latency; ``{**counts, "miou",
        "per_class_iou", "pixel_accuracy", "mean_class_accuracy", "latency_ms"}``.

    """
    scores = matrix.scores()
    latency = {name: value if np.isfinite(value) else None
               for name, value in latency_percentiles(latencies_s).items()}
    lines = [format_table(scores, classes.names)]
    lines += [f'{name.replace("_", " ")}: {value}' for name, value in counts.items()]
    lines.append(f'{latency_name} ms: p50 {latency["p50"]}  p99 {latency["p99"]}')
    payload = {**counts, **scores_to_dict(scores, classes.names), 'latency_ms': latency}
    return '\n'.join(lines), payload
