"""The CDR reader against rclpy's own (de)serialisation of sensor_msgs Image/CompressedImage."""

import struct

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from seg_node.core import image_codec
from seg_node.core.errors import ImageError
from seg_node.core.image_cdr import read_compressed_image, read_image


def _image(encoding: str, width: int, height: int, padding: int, frame_id: str,
           is_bigendian: int) -> Image:
    rng = np.random.default_rng(width * 31 + padding)
    rgb = rng.integers(0, 256, (height, width, 3), np.uint8)
    rows = image_codec.encode_rgb(rgb, encoding)
    padded = np.zeros((height, rows.shape[1] + padding), np.uint8)
    padded[:, :rows.shape[1]] = rows
    msg = Image(height=height, width=width, encoding=encoding, step=padded.shape[1],
                is_bigendian=is_bigendian)
    msg.data = padded.tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = -7 if padding else 1_700_000_123, 999
    msg.header.frame_id = frame_id
    return msg


@pytest.mark.parametrize('encoding', image_codec.ACCEPTED_ENCODINGS)
@pytest.mark.parametrize(('width', 'padding', 'frame_id', 'is_bigendian'), [
    (6, 0, 'camera', 0), (10, 3, 'cam', 1), (12, 5, '', 0), (8, 1, 'front_left_x', 1)])
def test_image_fields_and_pixels_match_rclpy(encoding, width, padding, frame_id, is_bigendian):
    msg = _image(encoding, width, 5, padding, frame_id, is_bigendian)
    buffer = serialize_message(msg)
    raw = read_image(buffer)
    reference = deserialize_message(buffer, Image)
    assert (raw.header.stamp.sec, raw.header.stamp.nanosec, raw.header.frame_id) == (
        reference.header.stamp.sec, reference.header.stamp.nanosec, reference.header.frame_id)
    assert (raw.height, raw.width, raw.encoding, raw.is_bigendian, raw.step) == (
        reference.height, reference.width, reference.encoding, reference.is_bigendian,
        reference.step)
    assert raw.data.tobytes() == bytes(reference.data)
    assert np.shares_memory(raw.data, np.frombuffer(buffer, np.uint8))  # a view, no copy
    assert not raw.data.flags.writeable
    np.testing.assert_array_equal(image_codec.decode_image(raw, 'bilinear'),
                                  image_codec.decode_image(reference, 'bilinear'))


def test_big_endian_cdr_is_read():
    frame_id, encoding, pixels = b'cam\0', b'mono8\0', bytes(range(6))
    body = (struct.pack('>iI', -3, 42) + struct.pack('>I', len(frame_id)) + frame_id
            + struct.pack('>II', 2, 3))
    body += struct.pack('>I', len(encoding)) + encoding + b'\1'
    body += b'\0' * (-len(body) % 4) + struct.pack('>II', 3, len(pixels)) + pixels
    raw = read_image(b'\x00\x00\x00\x00' + body)
    header = raw.header
    assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (-3, 42, 'cam')
    assert (raw.height, raw.width, raw.encoding, raw.is_bigendian, raw.step) == (
        2, 3, 'mono8', 1, 3)
    np.testing.assert_array_equal(raw.data, np.arange(6))


def test_compressed_image_matches_rclpy():
    msg = CompressedImage(format='jpeg')
    msg.header.frame_id = 'left'
    msg.header.stamp.sec = 12
    msg.data = image_codec.encode_compressed(np.full((8, 10, 3), 90, np.uint8), 'jpeg')
    buffer = serialize_message(msg)
    raw = read_compressed_image(buffer)
    assert (raw.header.frame_id, raw.header.stamp.sec, raw.format) == ('left', 12, 'jpeg')
    assert raw.data.tobytes() == bytes(msg.data)
    np.testing.assert_array_equal(image_codec.decode(raw), image_codec.decode(msg))


def test_empty_truncated_and_foreign_buffers_raise_image_error():
    buffer = serialize_message(_image('rgb8', 6, 5, 0, 'camera', 0))
    with pytest.raises(ImageError, match='shorter than its CDR header'):
        read_image(b'')
    for cut in (4, 10, 30, len(buffer) - 1):
        with pytest.raises(ImageError, match='truncated serialized Image'):
            read_image(buffer[:cut])
    with pytest.raises(ImageError, match='CDR representation 0x0003'):
        read_image(b'\x00\x03' + buffer[2:])
    empty = Image(encoding='rgb8')
    raw = read_image(serialize_message(empty))
    assert raw.data.size == 0
    with pytest.raises(ImageError, match='empty frame'):
        image_codec.decode_image(raw)
