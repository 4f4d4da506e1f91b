"""score-live end to end: the real node on rclpy, a bag played over DDS, scores vs eval-bag."""

import json

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from conftest import CAMVID_FIXTURES, wait_for
from seg_node.evaluation.bags import CAMERA_TOPIC, GROUND_TRUTH_TOPIC, make_bag
from seg_node.core.classes import load_classes
from seg_node.tools.cli.main import main
from seg_node.core.errors import ConfigError
from seg_node.tools.live import LiveScorer, score_live
from seg_node.ros.node import SegNode

CLASSES = load_classes()


def test_play_without_a_node_is_a_clear_error(tmp_path):
    bag = tmp_path / 'drive'
    make_bag(CAMVID_FIXTURES, bag, limit=1)
    with pytest.raises(ConfigError, match='no seg_node subscribed /camera/image_raw and '
                       'published /seg_node/labels within 1 s; start seg_node remapped'):
        score_live(CLASSES, GROUND_TRUTH_TOPIC, play=bag, timeout=1.0)


def test_score_live_matches_eval_bag(ros_context, tiny_model, tmp_path):
    bag = tmp_path / 'drive'
    make_bag(CAMVID_FIXTURES, bag, rate=2.0, limit=3)
    ros_context.add(SegNode(context=ros_context.context, parameter_overrides=[
        Parameter('model', value=str(tiny_model)), Parameter('num_threads', value=2)],
        cli_args=['--ros-args', '-r', 'image:=/camera/image_raw']))
    assert main(['score-live', '--label-topic', GROUND_TRUTH_TOPIC, '--play', str(bag),
                 '--timeout', '10', '--json', str(tmp_path / 'live.json')]) == 0
    assert main(['eval-bag', str(bag), '--image-topic', CAMERA_TOPIC, '--label-topic',
                 GROUND_TRUTH_TOPIC, '--model', str(tiny_model), '--threads', '2', '--json',
                 str(tmp_path / 'bag.json')]) == 0
    live = json.loads((tmp_path / 'live.json').read_text())
    offline = json.loads((tmp_path / 'bag.json').read_text())
    assert live['frames_published'] == 3
    assert live['frames'] > 0 and live['frames'] == live['labels_received']
    assert live['dropped'] == 3 - live['labels_received']
    assert (live['corrupt'], live['skipped'], live['unmatched_labels']) == (0, 0, live['dropped'])
    assert 0 < live['latency_ms']['p50'] <= live['latency_ms']['p99'] < 5000
    assert offline['frames'] == 3 and offline['miou'] > 0
    if live['dropped'] == 0:
        assert live['miou'] == pytest.approx(offline['miou'], abs=1e-6)
        assert live['per_class_iou'] == offline['per_class_iou']
        assert live['pixel_accuracy'] == offline['pixel_accuracy']


def test_camera_count_follows_the_publishers_reliability(ros_context):
    scorer = ros_context.add(LiveScorer(CLASSES, GROUND_TRUTH_TOPIC, image_topic=CAMERA_TOPIC,
                                        context=ros_context.context))
    assert scorer.camera.reliability == 'best_effort'  # No publisher yet.
    camera = ros_context.add(Node('camera', context=ros_context.context))
    publisher = camera.create_publisher(Image, CAMERA_TOPIC, QoSProfile(
        depth=5, reliability=ReliabilityPolicy.RELIABLE))
    assert wait_for(lambda: scorer.camera.reliability == 'reliable', 5.0)
    frame = Image(height=2, width=2, encoding='rgb8', step=6, data=bytes(12))

    def published_and_counted() -> bool:
        frame.header.stamp.sec += 1
        publisher.publish(frame)
        publisher.publish(frame)  # A repeated stamp is one frame.
        return len(scorer.frames) >= 3

    assert wait_for(published_and_counted, 10.0)
    assert set(scorer.frames) <= {sec * 10**9 for sec in range(1, frame.header.stamp.sec + 1)}
    assert set(scorer.frames.values()) == {None}  # Seen, not played: no latency.
    scores = scorer.scores()
    assert scores.frames_published == len(scorer.frames) >= 3
    assert scores.dropped == scores.frames_published  # No node: no labels.
    assert (scores.labels_received, scores.latencies_s) == (0, [])
    np.testing.assert_array_equal(scores.pairing.matrix.matrix, 0)
