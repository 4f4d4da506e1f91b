"""seg_node as a process under a fuzz of malformed camera messages over real rclpy.

Several hundred generated broken Image or CompressedImage messages, decompression bombs among
them, interleaved with valid frames of odd sizes: the node stays up, serves every valid frame
it takes, counts each broken one as rejected, keeps native decoder output off the console
and its memory bounded.
"""

import time

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from seg_node import CAMERA_TOPIC
from seg_node.core.image_codec import encode_compressed
from seg_node.core.pipeline import DEFAULT_BUFFER_BYTES
from seg_node.tools.hostile_inputs import (jpeg_bomb, malformed_compressed, malformed_images,
                                           png_bomb)
from seg_node.tools.ros_client import FrameClient, live_session, wait_until
from seg_node.tools.soak import CameraClient, process_memory_mb

MALFORMED = 300
VALID_EVERY = 20  # one valid frame after this many broken ones
NATIVE_LINE_STARTS = ('libpng', 'Corrupt JPEG', 'Premature end', '[ WARN', '[ERROR')


def valid_frames(rng: np.random.Generator, rgb: np.ndarray, transport: str, count: int) -> list:
    """Return ``count`` valid camera messages of random sizes (16..1200 px a side)."""
    messages = []
    for _ in range(count):
        height, width = (int(side) for side in rng.integers(16, 1200, 2))
        messages.append(camera_message(np.resize(rgb, (height, width, 3)), transport))
    return messages


def oversized_messages(rgb: np.ndarray, transport: str) -> list:
    """Return two small messages far over the pixel budget: the bombs, or lying raw sizes."""
    if transport == 'compressed':
        return [CompressedImage(format='jpeg', data=jpeg_bomb(rgb)),
                CompressedImage(format='png', data=png_bomb())]
    return [Image(encoding='rgb8', height=30000, width=30000, step=90000, data=bytes(64)),
            Image(encoding='bayer_rggb8', height=2**32 - 1, width=2**32 - 1, step=2**32 - 1,
                  data=bytes(64))]


def camera_message(rgb: np.ndarray, transport: str) -> Image | CompressedImage:
    """Return ``rgb`` as an rgb8 Image or a JPEG CompressedImage."""
    if transport == 'raw':
        return FrameClient.frame(rgb)
    return CompressedImage(format='jpeg', data=encode_compressed(rgb, 'jpeg'))


def broken_messages(rng: np.random.Generator, rgb: np.ndarray, transport: str) -> list:
    """Return MALFORMED generated broken messages of ``transport``."""
    if transport == 'raw':
        return [Image(**fields) for fields in malformed_images(rng, rgb, MALFORMED)]
    return [CompressedImage(format='jpeg', data=data)
            for data in malformed_compressed(rng, rgb, MALFORMED)]


@pytest.mark.parametrize('transport', ['raw', 'compressed'])
def test_fuzzed_camera_messages_are_rejected_and_valid_frames_served(tiny_model, camvid_rgb,
                                                                     transport):
    rng = np.random.default_rng(24)
    oversized = oversized_messages(camvid_rgb, transport)
    broken = broken_messages(rng, camvid_rgb, transport)
    valid = valid_frames(rng, camvid_rgb, transport, MALFORMED // VALID_EVERY + 1)
    camvid = camera_message(camvid_rgb, transport)
    message_type = Image if transport == 'raw' else CompressedImage
    topic = CAMERA_TOPIC if transport == 'raw' else f'{CAMERA_TOPIC}/compressed'
    parameters = {'model': str(tiny_model), 'num_threads': 1, 'image_transport': transport,
                  'input_reliability': 'reliable', 'input_depth': 100}
    with live_session(parameters) as session:
        client = CameraClient(message_type, topic, depth=1000, context=session.context)
        session.executor.add_node(client)
        node = session.node
        assert wait_until(client.connected, 30, node)
        sent = 0

        def publish(msg: Image | CompressedImage, answer: bool = False) -> tuple[int, int]:
            """Publish the next message; for a valid frame, wait until it is answered."""
            nonlocal sent
            stamp = client.publish(msg, sent)
            sent += 1
            if answer:
                assert wait_until(lambda: stamp in client.answered, 30, node)
            return stamp

        valid_stamps = {publish(camvid, answer=True)}
        before = process_memory_mb(node.process.pid)
        for msg in oversized:  # each followed by a valid frame, served
            publish(msg)
            time.sleep(0.05)
            valid_stamps.add(publish(camvid, answer=True))
        assert wait_until(lambda: client.counters.get('rejected') == 2, 5, node), client.counters
        bombs_memory = process_memory_mb(node.process.pid)
        started = time.monotonic()
        for number, msg in enumerate(broken, 1):
            publish(msg)
            if number % VALID_EVERY == 0:
                valid_stamps.add(publish(valid.pop(), answer=True))
            time.sleep(0.01)  # paced so that the worker usually takes each one
        valid_stamps.add(publish(valid.pop(), answer=True))

        def all_counted() -> bool:
            counts = client.counters
            return counts.get('received') == sent and sum(
                counts[name] for name in ('served', 'dropped', 'rejected')) == sent
        assert wait_until(all_counted, 10, node), client.counters
        elapsed = time.monotonic() - started
        after = process_memory_mb(node.process.pid)
        assert node.stop() == 0
        output = node.process.stdout.read().splitlines()
    counts = client.counters
    # every frame counted once: each valid one served, each broken one rejected unless a
    # newer message replaced it before the worker took it
    assert counts['served'] == len(valid_stamps) == len(set(client.answered))
    assert counts['rejected'] + counts['dropped'] == MALFORMED + len(oversized)
    assert counts['rejected'] >= MALFORMED // 2
    # memory: a decoded bomb would take >= 1.2 GB (the PNG: 400 M pixels, RGB); later growth
    # stays within the buffers kept for earlier frame sizes (Segmenter) and the newest outputs
    assert bombs_memory['peak_rss_mb'] - before['rss_mb'] < 64, (before, bombs_memory)
    assert after['peak_rss_mb'] < 1500
    assert after['rss_mb'] - before['rss_mb'] < DEFAULT_BUFFER_BYTES / 2**20 + 32
    # decoder noise only inside the node's throttled (1 line/s) warnings
    assert not [line for line in output if line.startswith(NATIVE_LINE_STARTS)], output
    warnings = [line for line in output if 'dropped frame' in line]
    assert 1 <= len(warnings) <= elapsed + 3
