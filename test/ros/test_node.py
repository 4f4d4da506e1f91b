"""The node on real rclpy, in-process: topics, values, QoS, laziness and bad frames."""

import time

import cv2
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from conftest import wait_for
from seg_node.core.classes import load_classes
from seg_node.core.image_codec import encode_rgb
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from node_harness import image_msg, node_fixture, Probe, send_until, start  # noqa: F401
from seg_node.tools.ros_client import image_array

BEST_EFFORT = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


def test_labels_and_confidences_match_the_model(ros_context, node, tiny_model, camvid_rgb):
    probe = ros_context.add(Probe(ros_context.context))
    classes = load_classes()
    for topic in ('/seg_node/labels', '/seg_node/confidence', '/seg_node/color',
                  '/seg_node/overlay', '/seg_node/class_confidence/road'):
        probe.listen(topic)
    labels_msg = send_until(probe, '/seg_node/labels', image_msg(camvid_rgb, 7))
    assert labels_msg is not None
    assert wait_for(lambda: all(probe.last(t, 7) for t in probe.received))
    expected = OnnxRuntimeBackend(tiny_model).infer(camvid_rgb, probabilities=True)
    assert labels_msg.header.frame_id == 'camera'
    assert (labels_msg.height, labels_msg.width, labels_msg.encoding) == (360, 480, 'mono8')
    labels = image_array(labels_msg)
    np.testing.assert_array_equal(labels, expected.labels)
    confidence = image_array(probe.last('/seg_node/confidence', 7))
    assert 0.0 <= confidence.min() and confidence.max() <= 1.0
    np.testing.assert_allclose(confidence, expected.confidence, atol=1e-6)
    road = image_array(probe.last('/seg_node/class_confidence/road', 7))
    is_road = labels == classes.names.index('road')
    np.testing.assert_allclose(road[is_road], confidence[is_road], atol=1e-6)
    assert (road[~is_road] <= confidence[~is_road] + 1e-6).all()
    color = image_array(probe.last('/seg_node/color', 7))
    np.testing.assert_array_equal(color, classes.palette[labels])
    overlay = image_array(probe.last('/seg_node/overlay', 7)).astype(int)
    blend = 0.5 * camvid_rgb.astype(int) + 0.5 * color.astype(int)
    assert np.abs(overlay - blend).max() <= 1


def test_lazy_topics_publish_only_while_subscribed(ros_context, node, camvid_rgb):
    probe = ros_context.add(Probe(ros_context.context))
    probe.listen('/seg_node/labels')
    assert send_until(probe, '/seg_node/labels', image_msg(camvid_rgb, 1)) is not None
    outputs = node.outputs[0]
    assert outputs.color_pub.get_subscription_count() == 0
    assert outputs.color.msg.height == 0  # never rendered while nobody listened
    probe.listen('/seg_node/color')
    assert send_until(probe, '/seg_node/color', image_msg(camvid_rgb, 2)) is not None
    probe.stop_listening('/seg_node/color')
    assert wait_for(lambda: outputs.color_pub.get_subscription_count() == 0)
    rendered = outputs.color.msg.header.stamp.sec
    assert send_until(probe, '/seg_node/labels', image_msg(camvid_rgb, 3)) is not None
    assert outputs.color.msg.header.stamp.sec == rendered == 2


def test_best_effort_subscriber_and_compressed_labels(ros_context, node, camvid_rgb):
    probe = ros_context.add(Probe(ros_context.context, qos=BEST_EFFORT))
    probe.listen('/seg_node/labels')
    probe.listen('/seg_node/labels/compressed', CompressedImage)
    assert send_until(probe, '/seg_node/labels/compressed', image_msg(camvid_rgb, 4))
    import cv2
    msg = probe.last('/seg_node/labels/compressed', 4)
    decoded = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_UNCHANGED)
    labels = image_array(probe.last('/seg_node/labels', 4)) if probe.last(
        '/seg_node/labels', 4) else None
    assert decoded.shape == (360, 480)
    if labels is not None:
        np.testing.assert_array_equal(decoded, labels)


BAD_FRAMES = {
    'unsupported encoding': dict(encoding='32FC1', width=4, height=2, step=16,
                                 data=np.full(8, np.nan, np.float32).tobytes()),
    'short step': dict(encoding='rgb8', width=4, height=2, step=6, data=bytes(24)),
    'truncated': dict(encoding='rgb8', width=4, height=2, step=12, data=bytes(13)),
    'empty': dict(encoding='rgb8', width=0, height=0, step=0, data=b''),
    'big-endian 16 bit': dict(encoding='mono16', width=4, height=2, step=8, data=bytes(16),
                              is_bigendian=1),
}


@pytest.mark.parametrize('problem', BAD_FRAMES)
def test_bad_frame_is_dropped_and_next_frame_served(ros_context, node, camvid_rgb, problem):
    probe = ros_context.add(Probe(ros_context.context))
    probe.listen('/seg_node/labels')
    bad = Image(**BAD_FRAMES[problem])
    bad.header.stamp.sec = 50
    assert wait_for(lambda: node.count_publishers('/camera/image_raw') >= 1)
    assert wait_for(lambda: node.camera_subscriptions[0].get_publisher_count() >= 1)
    deadline = time.monotonic() + 10
    while node.rejected == [0] and time.monotonic() < deadline:
        probe.camera.publish(bad)
        time.sleep(0.1)
    assert node.rejected[0] >= 1
    assert probe.last('/seg_node/labels', 50) is None
    assert send_until(probe, '/seg_node/labels', image_msg(camvid_rgb[:, :, :], 51))


def test_large_frame_is_served_at_camera_size(ros_context, node, camvid_rgb):
    probe = ros_context.add(Probe(ros_context.context))
    probe.listen('/seg_node/labels')
    import cv2
    big = cv2.resize(camvid_rgb, (2880, 2160), interpolation=cv2.INTER_LINEAR)
    labels = send_until(probe, '/seg_node/labels', image_msg(big, 9))
    assert labels is not None and (labels.height, labels.width) == (2160, 2880)
    values = np.unique(image_array(labels))
    assert values.max() < 11


def test_diagnostics_report_counts_latency_backend_and_model(ros_context, node, camvid_rgb,
                                                             tiny_model):
    from diagnostic_msgs.msg import DiagnosticArray
    probe = ros_context.add(Probe(ros_context.context))
    probe.listen('/seg_node/labels')
    diagnostics = []
    probe.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
    assert send_until(probe, '/seg_node/labels', image_msg(camvid_rgb, 21))
    assert wait_for(lambda: any(
        int(dict((kv.key, kv.value) for kv in d.status[0].values)['frames_served']) >= 1
        for d in diagnostics), timeout=5)
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
    assert int(values['frames_in']) >= int(values['frames_served']) >= 1
    assert float(values['latency_p50_ms']) > 0 and values['backend'] == 'onnxruntime'
    assert values['model'] == str(tiny_model) and 'frames_dropped' in values
    assert diagnostics[-1].status[0].name == 'seg_node: semantic segmentation'


def test_compressed_transport_serves_jpeg_frames(ros_context, tiny_model, camvid_rgb):
    from seg_node.core.image_codec import decode_compressed, encode_compressed
    compressed_node = start(ros_context, tiny_model, image_transport='compressed')
    assert compressed_node.camera_subscriptions[0].topic_name == (
        '/camera/image_raw/compressed')
    probe = ros_context.add(Probe(ros_context.context))
    probe.listen('/seg_node/labels')
    msg = CompressedImage(format='jpeg')
    msg.data = encode_compressed(camvid_rgb, 'jpeg')
    msg.header.stamp.sec = 33
    labels = send_until(probe, '/seg_node/labels', msg)
    assert labels is not None and (labels.height, labels.width) == (360, 480)
    expected = OnnxRuntimeBackend(tiny_model).infer(decode_compressed(msg)).labels
    np.testing.assert_array_equal(image_array(labels), expected)


@pytest.mark.parametrize('debayer, code', [(None, cv2.COLOR_BayerBG2RGB_VNG),
                                           ('bilinear', cv2.COLOR_BayerBG2RGB)])
def test_bayer_frames_are_demosaiced_as_configured(ros_context, tiny_model, camvid_rgb,
                                                   debayer, code):
    start(ros_context, tiny_model, **({} if debayer is None else {'debayer': debayer}))
    probe = ros_context.add(Probe(ros_context.context))
    probe.listen('/seg_node/labels')
    labels = send_until(probe, '/seg_node/labels', image_msg(camvid_rgb, 44, 'bayer_rggb8'))
    assert labels is not None
    demosaiced = cv2.cvtColor(encode_rgb(camvid_rgb, 'bayer_rggb8'), code)
    expected = OnnxRuntimeBackend(tiny_model).infer(demosaiced).labels
    np.testing.assert_array_equal(image_array(labels), expected)


@pytest.mark.parametrize('spinning', [None, False])
def test_inference_spinning_reaches_every_onnxruntime_session(ros_context, tiny_model,
                                                              spinning):
    spinning_node = start(ros_context, tiny_model,
                          **({} if spinning is None else {'inference_spinning': spinning}))
    backend = spinning_node.segmenter.backend
    sessions = [backend.session] + [session for session, _ in backend._runners.values()]
    entries = {session.get_session_options().get_session_config_entry(
        'session.intra_op.allow_spinning') for session in sessions}
    assert entries == ({'1'} if spinning is None else {'0'})
