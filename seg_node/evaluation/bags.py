"""Rosbag tooling without rclpy: make-bag, eval-bag and the bag I/O they share.

make-bag turns labelled frames into an evaluation bag; eval-bag scores a model on recorded
drives and writes its outputs back as a bag. Every bag goes through the ``rosbags`` library:
rosbag2 (sqlite3 or mcap) and ROS 1 ``.bag`` are read with AnyReader; bags are written as
rosbag2 with the Kilted type store, whose sensor_msgs and std_msgs definitions are identical
to Humble's and Jazzy's. Conversion, inference and scoring are the node's own code
(image_codec, Segmenter, ConfusionMatrix).
"""

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import Connection
from rosbags.rosbag1 import ReaderError as Rosbag1ReaderError
from rosbags.rosbag2 import ReaderError as Rosbag2ReaderError, StoragePlugin, Writer, WriterError
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
# eval-bag's frame counts, in report order (``frames`` = frames scored).
FRAME_COUNTS = ('frames', 'skipped', 'corrupt', 'camera_frames', 'unmatched_labels')
# What rosbags raises while reading a damaged bag file (a checksum, a cut-short chunk).
_CORRUPT_BAG_ERRORS = (AnyReaderError, Rosbag1ReaderError, Rosbag2ReaderError,
                       sqlite3.DatabaseError)
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
        BagError: the path is missing or not a readable bag, or reading it meets a damaged
            part of the file (also raised from the ``with`` body).

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
    except _CORRUPT_BAG_ERRORS as err:
        raise BagError(f'bag {path} is damaged ({err}); re-record or repair it (ros2 bag '
                       'reindex), or leave it out') from err
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


def check_storage(storage: str) -> None:
    """Refuse a bag storage other than 'sqlite3' and 'mcap'.

    Raises:
        BagError: listing the storages.

    """
    if storage not in STORAGES:
        raise BagError(f'unknown bag storage {storage!r}; choose one of ' + ', '.join(STORAGES))


class BagWriter:
    """Writes rosbag2 messages with Kilted definitions; use as a context manager."""

    def __init__(self, path: Path, storage: str = 'sqlite3') -> None:
        """Prepare ``path`` (a new folder) in ``storage`` 'sqlite3' or 'mcap'.

        Raises:
            BagError: unknown storage or the path exists.

        """
        check_storage(storage)
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
    return make_drives(source, output, 1, (storage,), split, rate, limit, encoding, compressed,
                       start_ns)[0][1]


def make_drives(source: Path, output: Path, drives: int, storages: tuple[str, ...],
                split: str = 'val', rate: float = 10.0, limit: int | None = None,
                encoding: str = 'rgb8', compressed: str | None = None,
                start_ns: int | None = None) -> list[tuple[Path, int]]:
    """Cut a labelled image sequence into ``drives`` consecutive evaluation bags.

    With one drive ``output`` is the bag; with more it is a new folder holding
    ``drive_01``, ``drive_02``, ... of nearly equal frame counts, the stamps running on
    from drive to drive as in one recording (see :func:`make_bag` for the messages).

    Args:
        source: CamVid-format folder or split file.
        output: the new bag folder (one drive) or folder of bags.
        drives: number of bags, at most the number of frames.
        storages: 'sqlite3' / 'mcap' of each drive in turn, repeated as needed.
        split: split name when ``source`` is a folder.
        rate: frames per second.
        limit: at most this many frames, cut into the drives.
        encoding: raw image encoding, as for make_bag.
        compressed: 'jpeg' or 'png', as for make_bag.
        start_ns: stamp of the first drive's first frame; None: now.

    Returns:
        (bag path, frames written) of each drive.

    Raises:
        ConfigError: bad rate, encoding, format or drive count, or unreadable frames.
        BagError: unknown storage or a bag cannot be written.

    """
    if rate <= 0:
        raise ConfigError(f'rate {rate} Hz is invalid; pass a positive frame rate')
    if encoding not in image_codec.ACCEPTED_ENCODINGS:
        raise ConfigError(f'encoding {encoding!r} is not accepted; choose one of '
                          + ', '.join(image_codec.ACCEPTED_ENCODINGS))
    if compressed not in (None, *COMPRESSED_FORMATS):
        raise ConfigError(f'compressed format {compressed!r} is not accepted; choose one of '
                          + ', '.join(COMPRESSED_FORMATS))
    for storage in storages:
        check_storage(storage)
    pairs = sorted(split_pairs(Path(source), split), key=lambda pair: pair[0].name)[:limit]
    if not 1 <= drives <= len(pairs):
        raise ConfigError(f'{drives} drives cannot be cut from {len(pairs)} frames; pass '
                          f'--drives between 1 and {len(pairs)}')
    start = time.time_ns() if start_ns is None else start_ns
    if drives == 1:
        paths = [Path(output)]
    else:
        if Path(output).exists():
            raise BagError(f'{output} exists; pass a new folder for the drives')
        width = len(str(drives))
        paths = [Path(output) / f'drive_{index:0{width}d}' for index in range(1, drives + 1)]
        Path(output).mkdir(parents=True)
    bounds = np.linspace(0, len(pairs), drives + 1).round().astype(int)
    written = []
    with tqdm(total=len(pairs), unit='frame', disable=None) as progress:
        for drive, path in enumerate(paths):
            first, end = bounds[drive], bounds[drive + 1]
            with BagWriter(path, storages[drive % len(storages)]) as writer:
                for index in range(first, end):
                    _write_frame(writer, *pairs[index], start + round(index * 1e9 / rate),
                                 encoding, compressed)
                    progress.update()
            written.append((path, int(end - first)))
    return written


def _write_frame(writer: BagWriter, image_path: Path, label_path: Path, stamp: int,
                 encoding: str, compressed: str | None) -> None:
    """Write one labelled frame as camera image, CameraInfo and mono8 ground truth."""
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
    writer.write(CAMERA_INFO_TOPIC, CAMERA_INFO, camera_info_msg(header, height, width), stamp)
    writer.write(GROUND_TRUTH_TOPIC, IMAGE, image_msg(header, read_label(label_path), 'mono8'),
                 stamp)


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
        frame_miou: (stamp, mIoU of that frame alone) of each scored frame, in scoring
            order, when made with ``record_frames``; else None.

    """

    def __init__(self, num_classes: int, expected: set[int] | None = None,
                 capacity: int | None = None, record_frames: bool = False) -> None:
        """Create an empty pairing for ``num_classes`` classes."""
        self.matrix = ConfusionMatrix(num_classes)
        self.expected = expected
        self.capacity = capacity
        self.scored = self.skipped = self.unmatched_truth = 0
        self.frame_miou: list[tuple[int, float]] | None = [] if record_frames else None
        self._predictions: dict[int, np.ndarray] = {}
        self._truths: dict[int, np.ndarray] = {}

    def add_prediction(self, stamp: int, labels: np.ndarray) -> None:
        """Offer a (H, W) uint8 prediction (copied if it has to wait)."""
        truth = self._truths.pop(stamp, None)
        if truth is not None:
            self._score(stamp, truth, labels)
        elif self.expected is not None and stamp not in self.expected:
            self.skipped += 1
        else:
            self.skipped += self._wait(self._predictions, stamp, labels.copy())

    def add_truth(self, stamp: int, label: np.ndarray) -> None:
        """Offer a (H, W) uint8 ground-truth label (void = ids >= K)."""
        prediction = self._predictions.pop(stamp, None)
        if prediction is not None:
            self._score(stamp, label, prediction)
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

    def _score(self, stamp: int, truth: np.ndarray, prediction: np.ndarray) -> None:
        if truth.shape != prediction.shape:
            self.skipped += 1
            _LOG.warning('ground truth %s and prediction %s differ in size; frame not scored',
                         truth.shape, prediction.shape)
            return
        if self.frame_miou is None:
            self.matrix.update(truth, prediction)
        else:
            frame = ConfusionMatrix(self.matrix.num_classes)
            frame.update(truth, prediction)
            self.matrix.merge(frame)
            self.frame_miou.append((stamp, frame.scores().miou))
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
        """Return the frame counts for the report, named as FRAME_COUNTS."""
        return dict(zip(FRAME_COUNTS, (self.pairing.scored, self.pairing.skipped, self.corrupt,
                                       self.camera_frames, self.pairing.unmatched_truth),
                        strict=True))

    def report(self, classes: ClassList) -> tuple[str, dict]:
        """Return eval-bag's printed report and JSON payload (see :func:`report`)."""
        return report(self.pairing.matrix, classes, self.counts(), self.latencies_s,
                      'inference latency')


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
                 debayer: str = image_codec.DEBAYER_METHODS[0],
                 on_frame: Callable[[], object] | None = None) -> BagEvaluation:
    """Run the node's inference path on every camera frame of a bag, in bag order.

    This is the one scoring path of eval-bag and eval-fleet (whose workers call it per bag).

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
        on_frame: called after each camera message (decoded or not); None: a progress bar
            over the camera frames.

    Raises:
        BagError: unreadable or damaged bag, missing topic, unwritable output or an unknown
            ``debayer`` method.

    """
    _check_topics(image_topic, label_topic, debayer)
    with open_bag(bag) as reader, ExitStack() as stack:
        cameras = topic_connections(reader, image_topic, CAMERA_TYPES)
        truths = topic_connections(reader, label_topic, CAMERA_TYPES) if label_topic else []
        pairing = StampPairing(classes.num_classes, _ground_truth_stamps(reader, truths),
                               record_frames=True)
        evaluation = BagEvaluation(pairing)
        writer = (stack.enter_context(BagWriter(output_bag, output_storage))
                  if output_bag else None)
        scorer = _FrameScorer(segmenter, classes, evaluation, writer, debayer)
        if on_frame is None:
            on_frame = stack.enter_context(tqdm(total=sum(c.msgcount for c in cameras),
                                                unit='frame', disable=None)).update
        for connection, log_ns, rawdata in reader.messages(cameras + truths):
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
            if is_camera:
                on_frame()
    pairing.finish()
    return evaluation


def _check_topics(image_topic: str, label_topic: str | None, debayer: str) -> None:
    """Refuse an unknown demosaicing method or one topic given as both camera and labels.

    Raises:
        BagError: naming the flag to change.

    """
    if debayer not in image_codec.DEBAYER_METHODS:
        raise BagError(f'unknown demosaicing method {debayer!r}; choose one of '
                       + ', '.join(image_codec.DEBAYER_METHODS) + ' (--debayer)')
    if label_topic == image_topic:
        raise BagError(f'--label-topic and --image-topic are both {image_topic}; pass the '
                       'ground-truth topic as --label-topic')


def camera_frame_count(bag: Path, image_topic: str) -> int:
    """Return the number of messages on ``image_topic`` from the bag's index.

    Raises:
        BagError: unreadable bag or missing topic.

    """
    with open_bag(bag) as reader:
        return sum(c.msgcount for c in topic_connections(reader, image_topic, CAMERA_TYPES))


def read_frames(bag: Path, image_topic: str, label_topic: str, stamps: set[int],
                debayer: str = image_codec.DEBAYER_METHODS[0]
                ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Return the camera frame and ground truth of each header stamp in ``stamps``.

    Decoded as evaluate_bag decodes them, e.g. to look again at frames it scored badly.

    Returns:
        {stamp: ((H, W, 3) uint8 RGB, (H, W) uint8 class ids)} of the stamps found on both
        topics.

    Raises:
        BagError: unreadable or damaged bag, missing topic or bad ``debayer``.
        ImageError: a wanted frame cannot be decoded.

    """
    _check_topics(image_topic, label_topic, debayer)
    cameras: dict[int, np.ndarray] = {}
    truths: dict[int, np.ndarray] = {}
    with open_bag(bag) as reader:
        connections = (topic_connections(reader, image_topic, CAMERA_TYPES)
                       + topic_connections(reader, label_topic, CAMERA_TYPES))
        for connection, _, rawdata in reader.messages(connections):
            try:
                msg = deserialize(reader, connection, rawdata)
            except ImageError:
                continue  # Not a frame evaluate_bag scored.
            stamp = stamp_ns(msg.header)
            if stamp not in stamps:
                continue
            if connection.topic == image_topic:
                cameras[stamp] = image_codec.decode(msg, debayer)
            else:
                truths[stamp] = decode_label(msg)
    return {stamp: (cameras[stamp], truths[stamp]) for stamp in cameras.keys() & truths.keys()}


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
