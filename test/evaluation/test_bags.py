"""make-bag and eval-bag on bags built from the real CamVid fixture frames (in tmp_path)."""

import json
import logging
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.convert import convert
from rosbags.image import message_to_cvimage
from rosbags.typesys import get_typestore, Stores

from conftest import CAMVID_FIXTURES
from seg_node.evaluation.bags import (BagWriter, CAMERA_TOPIC, COLOR_TOPIC, CONFIDENCE_TOPIC,
                                      evaluate_bag, GROUND_TRUTH_TOPIC, image_msg, LABELS_TOPIC,
                                      make_bag, make_header, open_bag, stamp_ns, StampPairing,
                                      TYPESTORE)
from seg_node.core.classes import load_classes
from seg_node.tools.cli.main import main
from seg_node.evaluation.dataset import load_split
from seg_node.core.errors import BagError
from seg_node.evaluation.scoring import evaluate_frames
from seg_node.core.image_codec import encode_compressed, encode_rgb
from seg_node.core.pipeline import load_segmenter

START_NS = 1_700_000_000 * 10**9
PERIOD_NS = 500_000_000  # --rate 2
NAMES = ['0016E5_07959.png', '0016E5_07961.png', '0016E5_07963.png']
CLASSES = load_classes()
# Camera variants of the same frames; rgb8 and bgr8 are lossless, the others are not.
VARIANTS = {
    'rgb8': ['--encoding', 'rgb8'],
    'bgr8': ['--encoding', 'bgr8'],
    'bayer_rggb8': ['--encoding', 'bayer_rggb8'],
    'yuv422': ['--encoding', 'yuv422'],
    'jpeg': ['--compressed', 'jpeg'],
}
LOSSLESS = ('rgb8', 'bgr8')


@pytest.fixture(scope='module')
def fixture_frames():
    data = load_split(CAMVID_FIXTURES)
    assert data.names == NAMES
    return data


@pytest.fixture(scope='module')
def segmenter(tiny_model):
    segmenter, classes = load_segmenter(tiny_model, threads=2)
    assert classes.names == CLASSES.names and segmenter.inference_size == (360, 480)
    return segmenter


def read_topic(bag: Path, topic: str) -> list[tuple[int, object]]:
    """Return (bag time, message) of every message on ``topic``, read back with rosbags."""
    with open_bag(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        return [(log_ns, reader.deserialize(raw, connection.msgtype))
                for connection, log_ns, raw in reader.messages(connections)]


def bag_topics(bag: Path) -> dict[str, str]:
    with open_bag(bag) as reader:
        return {name: info.msgtype for name, info in reader.topics.items()}


def reference_matrix(backend, frames) -> np.ndarray:
    """Confusion matrix of `seg_tool evaluate`'s loop (evaluate_frames) on (rgb, label)."""
    matrix, _ = evaluate_frames(backend.infer, frames, CLASSES.num_classes)
    return matrix.matrix


def write_split(folder: Path, frames: list[np.ndarray], labels: list[np.ndarray]) -> Path:
    """Save frames and labels as a CamVid-format split file for `seg_tool evaluate`."""
    (folder / 'val').mkdir(parents=True)
    (folder / 'valannot').mkdir()
    for name, rgb, label in zip(NAMES, frames, labels, strict=True):
        assert cv2.imwrite(str(folder / 'val' / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert cv2.imwrite(str(folder / 'valannot' / name), label)
    split = folder / 'val.txt'
    split.write_text(''.join(f'val/{n} valannot/{n}\n' for n in NAMES))
    return split


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_make_bag_round_trip(tmp_path, fixture_frames, storage):
    bag = tmp_path / 'drive'
    assert make_bag(CAMVID_FIXTURES, bag, rate=2.0, storage=storage, start_ns=START_NS) == 3
    assert next(bag.glob('*.db3' if storage == 'sqlite3' else '*.mcap')).stat().st_size > 0
    assert bag_topics(bag) == {CAMERA_TOPIC: 'sensor_msgs/msg/Image',
                               '/camera/camera_info': 'sensor_msgs/msg/CameraInfo',
                               GROUND_TRUTH_TOPIC: 'sensor_msgs/msg/Image'}
    cameras = read_topic(bag, CAMERA_TOPIC)
    infos = read_topic(bag, '/camera/camera_info')
    truths = read_topic(bag, GROUND_TRUTH_TOPIC)
    assert len(cameras) == len(infos) == len(truths) == 3
    for index, (camera, info, truth) in enumerate(zip(cameras, infos, truths, strict=True)):
        stamp = START_NS + index * PERIOD_NS
        for log_ns, msg in (camera, info, truth):
            assert (log_ns, stamp_ns(msg.header)) == (stamp, stamp)
            assert msg.header.frame_id == 'camera'
        image, label = camera[1], truth[1]
        assert (image.encoding, image.height, image.width) == ('rgb8', 360, 480)
        assert image.step == 1440
        np.testing.assert_array_equal(image.data.reshape(360, 480, 3),
                                      fixture_frames.images[index])
        assert (label.encoding, label.step) == ('mono8', 480)
        np.testing.assert_array_equal(label.data.reshape(360, 480),
                                      fixture_frames.labels[index])
        camera_info = info[1]
        assert (camera_info.height, camera_info.width) == (360, 480)
        np.testing.assert_allclose(camera_info.k, [480, 0, 239.5, 0, 480, 179.5, 0, 0, 1])


def test_make_bag_cuts_drives_whose_stamps_run_on(tmp_path, capsys, fixture_frames):
    output = tmp_path / 'drives'
    assert main(['make-bag', str(CAMVID_FIXTURES), str(output), '--drives', '2', '--storage',
                 'sqlite3,mcap', '--rate', '2']) == 0
    first, second = output / 'drive_1', output / 'drive_2'
    assert capsys.readouterr().out == (f'wrote 2 frames to {first}\n'
                                       f'wrote 1 frames to {second}\n')
    assert next(first.glob('*.db3')) and next(second.glob('*.mcap'))
    stamps = [stamp_ns(msg.header) for bag in (first, second)
              for _, msg in read_topic(bag, GROUND_TRUTH_TOPIC)]
    assert np.diff(stamps).tolist() == [PERIOD_NS, PERIOD_NS]
    np.testing.assert_array_equal(read_topic(second, GROUND_TRUTH_TOPIC)[0][1].data.reshape(
        360, 480), fixture_frames.labels[2])
    assert main(['make-bag', str(CAMVID_FIXTURES), str(tmp_path / 'more'), '--drives', '4']) == 1
    assert capsys.readouterr().err.startswith('seg_tool: error: 4 drives cannot be cut from 3 '
                                              'frames')
    assert not (tmp_path / 'more').exists()


def test_make_bag_png_compressed_is_lossless(tmp_path, fixture_frames):
    bag = tmp_path / 'drive'
    make_bag(CAMVID_FIXTURES, bag, compressed='png', limit=2, start_ns=START_NS)
    topic = f'{CAMERA_TOPIC}/compressed'
    assert bag_topics(bag)[topic] == 'sensor_msgs/msg/CompressedImage'
    messages = read_topic(bag, topic)
    assert len(messages) == 2
    for (_, msg), original in zip(messages, fixture_frames.images[:2], strict=True):
        np.testing.assert_array_equal(message_to_cvimage(msg, 'rgb8'), original)


@pytest.mark.parametrize('variant', VARIANTS)
def test_eval_bag_miou_equals_evaluate(tmp_path, tiny_model, fixture_frames, variant):
    """eval-bag and `seg_tool evaluate` agree on the frames as the bag delivers them.

    The delivered frames are decoded by rosbags-image, not seg_node's codec, and saved
    losslessly for `seg_tool evaluate`: for rgb8 and bgr8 they are the CamVid originals,
    for the lossy variants (Bayer, yuv422, JPEG) they honestly differ from them.
    rosbags-image demosaics bilinearly, so eval-bag is told to do the same.
    """
    bag = tmp_path / 'drive'
    assert main(['make-bag', str(CAMVID_FIXTURES), str(bag), '--rate', '2',
                 *VARIANTS[variant]]) == 0
    topic = CAMERA_TOPIC + ('/compressed' if variant == 'jpeg' else '')
    assert main(['eval-bag', str(bag), '--image-topic', topic, '--label-topic',
                 GROUND_TRUTH_TOPIC, '--model', str(tiny_model), '--debayer', 'bilinear',
                 '--json', str(tmp_path / 'bag.json')]) == 0
    delivered = [message_to_cvimage(msg, 'rgb8') for _, msg in read_topic(bag, topic)]
    labels = [message_to_cvimage(msg) for _, msg in read_topic(bag, GROUND_TRUTH_TOPIC)]
    split = write_split(tmp_path / 'delivered', delivered, labels)
    assert main(['evaluate', '--model', str(tiny_model), '--data', str(split), '--json',
                 str(tmp_path / 'evaluate.json')]) == 0
    from_bag = json.loads((tmp_path / 'bag.json').read_text())
    reference = json.loads((tmp_path / 'evaluate.json').read_text())
    assert from_bag['frames'] == reference['frames'] == 3
    assert (from_bag['skipped'], from_bag['corrupt']) == (0, 0)
    assert from_bag['miou'] == pytest.approx(reference['miou'], abs=1e-6)
    assert from_bag['per_class_iou'] == reference['per_class_iou']
    assert from_bag['pixel_accuracy'] == reference['pixel_accuracy']
    assert set(from_bag['latency_ms']) >= {'p50', 'p99'} and from_bag['latency_ms']['p50'] > 0
    exact = all(np.array_equal(a, b) for a, b in zip(delivered, fixture_frames.images,
                                                     strict=True))
    assert exact == (variant in LOSSLESS)
    for label, original in zip(labels, fixture_frames.labels, strict=True):
        np.testing.assert_array_equal(label, original)


def test_eval_bag_demosaics_bayer_frames_as_told(tmp_path, tiny_model, fixture_frames):
    """VNG by default, bilinear with --debayer bilinear: each scored as cv2 demosaics."""
    bag = tmp_path / 'drive'
    assert main(['make-bag', str(CAMVID_FIXTURES), str(bag), '--encoding', 'bayer_rggb8']) == 0
    mosaics = [np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width)
               for _, msg in read_topic(bag, CAMERA_TOPIC)]
    segmenter, _ = load_segmenter(tiny_model, None, 'onnxruntime', 1)
    matrices = {}
    for method, code, options in (('vng', cv2.COLOR_BayerBG2RGB_VNG, []),
                                  ('bilinear', cv2.COLOR_BayerBG2RGB, ['--debayer', 'bilinear'])):
        result = tmp_path / f'{method}.json'
        assert main(['eval-bag', str(bag), '--image-topic', CAMERA_TOPIC, '--label-topic',
                     GROUND_TRUTH_TOPIC, '--model', str(tiny_model), '--json', str(result),
                     *options]) == 0
        frames = [(cv2.cvtColor(mosaic, code), label)
                  for mosaic, label in zip(mosaics, fixture_frames.labels, strict=True)]
        expected, _ = evaluate_frames(segmenter.segment, frames, CLASSES.num_classes)
        matrices[method] = json.loads(result.read_text())['confusion_matrix']
        assert matrices[method] == expected.matrix.tolist()
    assert matrices['vng'] != matrices['bilinear']


def test_eval_bag_refuses_an_unknown_demosaicing_method(tmp_path, capsys, tiny_model):
    bag = tmp_path / 'drive'
    assert main(['make-bag', str(CAMVID_FIXTURES), str(bag), '--encoding', 'bayer_rggb8']) == 0
    capsys.readouterr()
    assert main(['eval-bag', str(bag), '--image-topic', CAMERA_TOPIC, '--model',
                 str(tiny_model), '--debayer', 'nearest']) == 1
    error = capsys.readouterr().err
    assert error == ("seg_tool: error: unknown demosaicing method 'nearest'; choose one of "
                     'vng, bilinear, edge-aware (--debayer)\n')


def frame_image(rgb: np.ndarray, stamp: int):
    return image_msg(make_header(stamp), encode_rgb(rgb, 'rgb8').reshape(360, 480, 3), 'rgb8')


def test_frames_without_matching_label_are_skipped(tmp_path, segmenter, fixture_frames):
    frames, labels = fixture_frames.images, fixture_frames.labels
    stamps = [START_NS + index * PERIOD_NS for index in range(3)]
    bag = tmp_path / 'drive'
    with BagWriter(bag) as writer:
        writer.write(CAMERA_TOPIC, 'sensor_msgs/msg/Image', frame_image(frames[0], stamps[0]),
                     stamps[0])
        writer.write(GROUND_TRUTH_TOPIC, 'sensor_msgs/msg/Image',
                     image_msg(make_header(stamps[0]), labels[0], 'mono8'), stamps[0])
        # Frame 1's label is recorded before the frame itself.
        writer.write(GROUND_TRUTH_TOPIC, 'sensor_msgs/msg/Image',
                     image_msg(make_header(stamps[1]), labels[1], 'mono8'), stamps[0] + 1)
        writer.write(CAMERA_TOPIC, 'sensor_msgs/msg/Image', frame_image(frames[1], stamps[1]),
                     stamps[1])
        # Frame 2's label is 1 ns off: no match.
        writer.write(CAMERA_TOPIC, 'sensor_msgs/msg/Image', frame_image(frames[2], stamps[2]),
                     stamps[2])
        writer.write(GROUND_TRUTH_TOPIC, 'sensor_msgs/msg/Image',
                     image_msg(make_header(stamps[2] + 1), labels[2], 'mono8'), stamps[2])
    evaluation = evaluate_bag(bag, segmenter, CLASSES, CAMERA_TOPIC, GROUND_TRUTH_TOPIC)
    assert evaluation.counts() == {'frames': 2, 'skipped': 1, 'corrupt': 0,
                                   'camera_frames': 3, 'unmatched_labels': 1}
    assert len(evaluation.latencies_s) == 3
    np.testing.assert_array_equal(
        evaluation.pairing.matrix.matrix,
        reference_matrix(segmenter.backend, zip(frames[:2], labels[:2], strict=True)))


@pytest.mark.parametrize('label_format', ['png', 'jpeg'])
def test_png_compressed_ground_truth_is_scored_and_jpeg_refused(
        tmp_path, segmenter, fixture_frames, label_format, caplog):
    """PNG-compressed labels score like mono8 ones; lossy JPEG labels are refused per frame."""
    bag = tmp_path / 'drive'
    topic = f'{GROUND_TRUTH_TOPIC}/compressed'
    with BagWriter(bag) as writer:
        for index, (rgb, label) in enumerate(zip(fixture_frames.images, fixture_frames.labels,
                                                 strict=True)):
            stamp = START_NS + index * PERIOD_NS
            writer.write(CAMERA_TOPIC, 'sensor_msgs/msg/Image', frame_image(rgb, stamp), stamp)
            data = np.frombuffer(encode_compressed(label, label_format), np.uint8)
            truth = TYPESTORE.types['sensor_msgs/msg/CompressedImage'](
                header=make_header(stamp), format=f'mono8; {label_format} compressed mono8',
                data=data)
            writer.write(topic, 'sensor_msgs/msg/CompressedImage', truth, stamp)
    with caplog.at_level(logging.WARNING, logger='seg_node.evaluation.bags'):
        evaluation = evaluate_bag(bag, segmenter, CLASSES, CAMERA_TOPIC, topic)
    if label_format == 'png':
        assert evaluation.counts() == {'frames': 3, 'skipped': 0, 'corrupt': 0,
                                       'camera_frames': 3, 'unmatched_labels': 0}
        np.testing.assert_array_equal(
            evaluation.pairing.matrix.matrix,
            reference_matrix(segmenter.backend, zip(fixture_frames.images,
                                                    fixture_frames.labels, strict=True)))
    else:
        assert evaluation.counts() == {'frames': 0, 'skipped': 3, 'corrupt': 3,
                                       'camera_frames': 3, 'unmatched_labels': 0}
        assert 'holds JPEG, which changes pixel values' in caplog.records[0].getMessage()


def test_corrupt_messages_are_skipped_and_counted(tmp_path, segmenter, fixture_frames, caplog):
    bag = tmp_path / 'drive'
    make_bag(CAMVID_FIXTURES, bag, start_ns=START_NS)
    database = sqlite3.connect(next(bag.glob('*.db3')))
    rows = database.execute(
        'SELECT messages.id, data FROM messages JOIN topics ON topics.id = topic_id '
        'WHERE topics.name = ? ORDER BY timestamp', (CAMERA_TOPIC,)).fetchall()
    # Frame 1: serialisation cut short. Frame 2: valid message, pixel data cut short.
    short_pixels = TYPESTORE.deserialize_cdr(rows[2][1], 'sensor_msgs/msg/Image')
    short_pixels.data = short_pixels.data[:-1000]
    updates = [(rows[1][1][:100], rows[1][0]),
               (bytes(TYPESTORE.serialize_cdr(short_pixels, 'sensor_msgs/msg/Image')),
                rows[2][0])]
    database.executemany('UPDATE messages SET data = ? WHERE id = ?', updates)
    database.commit()
    database.close()
    with caplog.at_level(logging.WARNING, logger='seg_node.evaluation.bags'):
        evaluation = evaluate_bag(bag, segmenter, CLASSES, CAMERA_TOPIC, GROUND_TRUTH_TOPIC)
    assert evaluation.counts() == {'frames': 1, 'skipped': 0, 'corrupt': 2,
                                   'camera_frames': 3, 'unmatched_labels': 2}
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2
    assert 'corrupt message on /camera/image_raw' in warnings[0]
    assert 'truncated data' in warnings[1]
    np.testing.assert_array_equal(
        evaluation.pairing.matrix.matrix,
        reference_matrix(segmenter.backend, [(fixture_frames.images[0],
                                              fixture_frames.labels[0])]))


def test_unknown_topic_error_lists_the_topics(tmp_path, segmenter, tiny_model, capsys):
    bag = tmp_path / 'drive'
    make_bag(CAMVID_FIXTURES, bag, limit=1)
    with pytest.raises(BagError) as raised:
        evaluate_bag(bag, segmenter, CLASSES, '/camera/image_color', GROUND_TRUTH_TOPIC)
    message = str(raised.value)
    assert message.startswith('topic /camera/image_color is not in the bag')
    for topic in (CAMERA_TOPIC, '/camera/camera_info', GROUND_TRUTH_TOPIC):
        assert topic in message
    assert main(['eval-bag', str(bag), '--image-topic', CAMERA_TOPIC, '--label-topic',
                 '/camera/gt', '--model', str(tiny_model)]) == 1
    error = capsys.readouterr().err
    assert error.startswith('seg_tool: error: topic /camera/gt is not in the bag')
    assert error.count('\n') == 1


def test_output_bag_has_seg_topics_with_camera_headers(tmp_path, segmenter, fixture_frames):
    bag, output = tmp_path / 'drive', tmp_path / 'segmented'
    make_bag(CAMVID_FIXTURES, bag, encoding='bgr8', start_ns=START_NS)
    evaluate_bag(bag, segmenter, CLASSES, CAMERA_TOPIC, output_bag=output,
                 output_storage='mcap')
    assert bag_topics(output) == {CAMERA_TOPIC: 'sensor_msgs/msg/Image',
                                  LABELS_TOPIC: 'sensor_msgs/msg/Image',
                                  CONFIDENCE_TOPIC: 'sensor_msgs/msg/Image',
                                  COLOR_TOPIC: 'sensor_msgs/msg/Image'}
    cameras = read_topic(bag, CAMERA_TOPIC)

    def summary(messages: list) -> list:
        return [(log_ns, stamp_ns(m.header), m.header.frame_id, m.encoding, m.data.tobytes())
                for log_ns, m in messages]

    assert summary(read_topic(output, CAMERA_TOPIC)) == summary(cameras)
    outputs = {topic: read_topic(output, topic)
               for topic in (LABELS_TOPIC, CONFIDENCE_TOPIC, COLOR_TOPIC)}
    for index, (log_ns, camera) in enumerate(cameras):
        expected = segmenter.backend.infer(fixture_frames.images[index])
        labels, confidence, color = (outputs[topic][index] for topic in outputs)
        for out_log_ns, msg in (labels, confidence, color):
            assert out_log_ns == log_ns
            assert (stamp_ns(msg.header), msg.header.frame_id) == (stamp_ns(camera.header),
                                                                   'camera')
        assert (labels[1].encoding, confidence[1].encoding, color[1].encoding) == (
            'mono8', '32FC1', 'rgb8')
        np.testing.assert_array_equal(labels[1].data.reshape(360, 480), expected.labels)
        np.testing.assert_array_equal(confidence[1].data.view(np.float32).reshape(360, 480),
                                      expected.confidence)
        np.testing.assert_array_equal(color[1].data.reshape(360, 480, 3),
                                      CLASSES.palette[expected.labels])


def test_ros1_bag_is_read(tmp_path, segmenter):
    bag2, bag1, output = tmp_path / 'drive', tmp_path / 'drive.bag', tmp_path / 'segmented'
    make_bag(CAMVID_FIXTURES, bag2, rate=2.0, encoding='yuv422', start_ns=START_NS)
    convert([bag2], bag1, 'sqlite3', 8, None, 'file', None,
            get_typestore(Stores.ROS1_NOETIC), [], [], [], [])
    with open_bag(bag1) as reader:
        assert not reader.is2
    from_ros1 = evaluate_bag(bag1, segmenter, CLASSES, CAMERA_TOPIC, GROUND_TRUTH_TOPIC,
                             output_bag=output)
    from_ros2 = evaluate_bag(bag2, segmenter, CLASSES, CAMERA_TOPIC, GROUND_TRUTH_TOPIC)
    assert from_ros1.counts() == from_ros2.counts() == {
        'frames': 3, 'skipped': 0, 'corrupt': 0, 'camera_frames': 3, 'unmatched_labels': 0}
    np.testing.assert_array_equal(from_ros1.pairing.matrix.matrix,
                                  from_ros2.pairing.matrix.matrix)
    stamps = [START_NS + index * PERIOD_NS for index in range(3)]
    for topic in (CAMERA_TOPIC, LABELS_TOPIC):
        assert [stamp_ns(msg.header) for _, msg in read_topic(output, topic)] == stamps


def test_stamp_pairing_with_capacity_counts_what_gives_way():
    pairing = StampPairing(2, capacity=2)
    prediction = np.array([[0, 1]], np.uint8)
    for stamp in (1, 2, 3):
        pairing.add_prediction(stamp, prediction)
    assert pairing.skipped == 1  # Stamp 1 gave way to stamp 3.
    pairing.add_truth(3, np.array([[0, 0]], np.uint8))
    pairing.add_truth(1, np.array([[1, 1]], np.uint8))
    pairing.finish()
    assert (pairing.scored, pairing.skipped, pairing.unmatched_truth) == (1, 2, 1)
    np.testing.assert_array_equal(pairing.matrix.matrix, [[1, 1], [0, 0]])


@pytest.mark.parametrize('arguments, problem', [
    (['--rate', '0'], 'rate 0.0 Hz is invalid'),
    (['--encoding', 'rgb16'], "encoding 'rgb16' is not accepted; choose one of rgb8, bgr8"),
    (['--compressed', 'tiff'], "compressed format 'tiff' is not accepted; choose one of jpeg"),
    (['--storage', 'rosbag1'], "unknown bag storage 'rosbag1'; choose one of sqlite3, mcap"),
])
def test_make_bag_rejects_bad_arguments(tmp_path, capsys, arguments, problem):
    assert main(['make-bag', str(CAMVID_FIXTURES), str(tmp_path / 'bag'), *arguments]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f'seg_tool: error: {problem}') and error.count('\n') == 1
    assert not (tmp_path / 'bag').exists()
