"""Several cameras in one node, on real rclpy: topics, per-camera headers and sizes, fairness."""

import threading
import time

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image

from conftest import wait_for
from seg_node.core.errors import ConfigError
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.core.pipeline import Segmenter
from node_harness import image_msg, Probe, RELIABLE, start
from seg_node.ros.cameras import check_cameras, image_name, output_topic
from seg_node.tools.ros_client import image_array


def test_camera_names_and_topics():
    assert check_cameras(['']) == ('',)
    assert check_cameras(['front', 'rear/left_1']) == ('front', 'rear/left_1')
    for bad in ([], ['front', 'front'], ['', 'front'], ['1st'], ['/front'], ['a b']):
        with pytest.raises(ConfigError, match='parameter cameras='):
            check_cameras(bad)
    assert (image_name(''), image_name('front')) == ('image', 'front/image')
    assert (output_topic('', 'labels'), output_topic('front', 'labels')) == (
        '~/labels', '~/front/labels')


def test_two_cameras_each_get_their_own_header_size_and_labels(ros_context, tiny_model,
                                                               camvid_rgb):
    node = start(ros_context, tiny_model, cameras=['front', 'left'])
    assert [sub.topic_name for sub in node.camera_subscriptions] == ['/front/image',
                                                                     '/left/image']
    probe = ros_context.add(Probe(ros_context.context))
    cameras = {'front': probe.create_publisher(Image, '/front/image', RELIABLE),
               'left': probe.create_publisher(Image, '/left/image', RELIABLE)}
    frames = {'front': camvid_rgb, 'left': cv2.resize(camvid_rgb, (240, 180))}
    for topic in ('/seg_node/front/labels', '/seg_node/left/labels',
                  '/seg_node/left/confidence'):
        probe.listen(topic)
    messages = {}
    for stamp, name in ((11, 'front'), (12, 'left')):
        messages[name] = image_msg(frames[name], stamp)
        messages[name].header.frame_id = f'{name}_optical'
    assert wait_for(lambda: all(p.get_subscription_count() for p in cameras.values()))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (
            probe.last('/seg_node/front/labels', 11) and probe.last('/seg_node/left/labels', 12)
            and probe.last('/seg_node/left/confidence', 12)):
        for name, publisher in cameras.items():
            publisher.publish(messages[name])
        time.sleep(0.2)
    front, left = (probe.last('/seg_node/front/labels', 11),
                   probe.last('/seg_node/left/labels', 12))
    assert (front.header.frame_id, front.height, front.width) == ('front_optical', 360, 480)
    assert (left.header.frame_id, left.height, left.width) == ('left_optical', 180, 240)
    assert not probe.last('/seg_node/front/labels', 12)  # no camera's frame leaks to another
    reference = Segmenter(OnnxRuntimeBackend(tiny_model), (360, 480))
    np.testing.assert_array_equal(image_array(front), reference.segment(camvid_rgb).labels)
    expected = reference.segment(frames['left'])
    np.testing.assert_array_equal(image_array(left), expected.labels)
    np.testing.assert_allclose(image_array(probe.last('/seg_node/left/confidence', 12)),
                               expected.confidence, atol=1e-6)
    assert node.served[0] >= 1 and node.served[1] >= 1


def test_overloaded_cameras_are_served_in_turn_and_drops_counted_per_camera(
        ros_context, tiny_model, camvid_rgb):
    names = ['a', 'b', 'c']
    node = start(ros_context, tiny_model, cameras=names, max_batch=1)
    probe = ros_context.add(Probe(ros_context.context))
    publishers = [probe.create_publisher(Image, f'/{name}/image', RELIABLE) for name in names]
    small = image_msg(cv2.resize(camvid_rgb, (160, 120)), 1)
    assert wait_for(lambda: all(
        p.get_subscription_count() and node.input_reliability[i] == 'reliable'
        for i, p in enumerate(publishers))), (node.input_reliability, [
            p.get_subscription_count() for p in publishers])
    stop = threading.Event()

    def offer() -> None:  # every camera far faster than one core segments 360x480 frames
        index = 0
        while not stop.is_set():
            index += 1
            small.header.stamp.sec = index
            for publisher in publishers:
                publisher.publish(small)
            time.sleep(0.004)
    thread = threading.Thread(target=offer)
    thread.start()
    assert wait_for(lambda: min(node.served) >= 8, timeout=30)
    stop.set()
    thread.join()
    slots = node.slots
    assert wait_for(lambda: sum(slots.received) == sum(slots.dropped) + sum(node.served),
                    timeout=5)  # every frame taken or dropped
    served = list(node.served)
    assert max(served) - min(served) <= 1, served
    assert min(node.slots.dropped) >= 1  # overloaded: every camera lost frames
    assert node.rejected == [0, 0, 0]


def test_named_cameras_with_compressed_transport_subscribe_image_compressed(
        ros_context, tiny_model):
    node = start(ros_context, tiny_model, cameras=['front', 'rear/left'],
                 image_transport='compressed')
    assert [sub.topic_name for sub in node.camera_subscriptions] == [
        '/front/image/compressed', '/rear/left/image/compressed']
    expected = {'/seg_node/front/labels', '/seg_node/rear/left/confidence',
                '/seg_node/front/class_confidence/road'}

    # the node's own publishers (a graph query by name could also see another seg_node)
    published = {publisher.topic_name for publisher in node.publishers}
    assert expected <= published
    assert '/seg_node/labels' not in published
