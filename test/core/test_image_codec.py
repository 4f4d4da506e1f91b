"""Tests for seg_node.core.image_codec with rclpy and rosbags messages and a real CamVid frame."""

import array
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from rosbags.image import message_to_cvimage
from rosbags.typesys import get_typestore, Stores
from sensor_msgs.msg import CompressedImage, Image

from seg_node.core.errors import ImageError
from seg_node.core.image_codec import (ACCEPTED_ENCODINGS, DEBAYER_METHODS, decode,
                                       decode_compressed, decode_compressed_mono8, decode_image,
                                       encode_compressed, encode_rgb)

FIXTURES = Path(__file__).parents[1] / 'fixtures' / 'camvid'
FRAME_NAME = '0016E5_07959.png'
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
BagImage = TYPESTORE.types['sensor_msgs/msg/Image']
BagCompressedImage = TYPESTORE.types['sensor_msgs/msg/CompressedImage']
BagHeader = TYPESTORE.types['std_msgs/msg/Header']
BagTime = TYPESTORE.types['builtin_interfaces/msg/Time']

EXACT_ENCODINGS = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4}  # Bytes per pixel.
BAYER_ENCODINGS = ('bayer_rggb8', 'bayer_bggr8', 'bayer_gbrg8', 'bayer_grbg8')
YUV_ENCODINGS = ('yuv422', 'yuv422_yuy2')
# Mean absolute error of a lossy round trip on the CamVid frame (measured: Bayer ~4.0 with
# bilinear demosaicing, ~2.4 with VNG, yuv ~0.7); decoding with a swapped Bayer pattern or U/V
# order gives 9.5 or more.
LOSSY_MAE = 6.0

# Top-left 2x2 tile of each ROS Bayer pattern for a flat colour R=200, G=100, B=30.
BAYER_TILES = {
    'bayer_rggb8': [[200, 100], [100, 30]],
    'bayer_bggr8': [[30, 100], [100, 200]],
    'bayer_gbrg8': [[100, 30], [200, 100]],
    'bayer_grbg8': [[100, 200], [30, 100]],
}
FLAT_RGB = (200, 100, 30)

# Two rows of one pixel pair each, BT.601 video range: (Y 16, 235; neutral U/V) is black
# then white, (Y 81, U 90, V 240) is pure red. A swapped U/V order would give blue.
UYVY_ROWS = [[128, 16, 128, 235], [90, 81, 240, 81]]
YUYV_ROWS = [[16, 128, 235, 128], [81, 90, 81, 240]]
PAIR_RGB = [[[0, 0, 0], [255, 255, 255]], [[255, 0, 0], [255, 0, 0]]]


def rclpy_image(rows: np.ndarray, width: int, encoding: str, is_bigendian: int = 0) -> Any:
    """Build an rclpy sensor_msgs/Image (data is array.array('B')) from (H, step) rows."""
    return Image(
        height=rows.shape[0],
        width=width,
        encoding=encoding,
        is_bigendian=is_bigendian,
        step=rows.shape[1],
        data=rows.tobytes(),
    )


def bag_image(rows: np.ndarray, width: int, encoding: str, is_bigendian: int = 0) -> Any:
    """Build a rosbags sensor_msgs/Image (data is a 1-D uint8 array) from (H, step) rows."""
    return BagImage(
        header=BagHeader(stamp=BagTime(sec=1, nanosec=2), frame_id='camera'),
        height=rows.shape[0],
        width=width,
        encoding=encoding,
        is_bigendian=is_bigendian,
        step=rows.shape[1],
        data=np.ascontiguousarray(rows).reshape(-1),
    )


def rclpy_compressed(data: bytes, fmt: str) -> Any:
    """Build an rclpy sensor_msgs/CompressedImage."""
    return CompressedImage(format=fmt, data=data)


def bag_compressed(data: bytes, fmt: str) -> Any:
    """Build a rosbags sensor_msgs/CompressedImage."""
    return BagCompressedImage(
        header=BagHeader(stamp=BagTime(sec=1, nanosec=2), frame_id='camera'),
        format=fmt,
        data=np.frombuffer(data, dtype=np.uint8).copy(),
    )


IMAGE_MAKERS = pytest.mark.parametrize('make', [rclpy_image, bag_image], ids=['rclpy', 'rosbags'])
COMPRESSED_MAKERS = pytest.mark.parametrize(
    'make', [rclpy_compressed, bag_compressed], ids=['rclpy', 'rosbags']
)


@pytest.fixture(scope='module')
def frame() -> np.ndarray:
    """Return the CamVid fixture frame as (360, 480, 3) uint8 RGB."""
    bgr = cv2.imread(str(FIXTURES / 'val' / FRAME_NAME), cv2.IMREAD_COLOR)
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope='module')
def label() -> np.ndarray:
    """Return the CamVid fixture label as (360, 480) uint8 class ids."""
    grey = cv2.imread(str(FIXTURES / 'valannot' / FRAME_NAME), cv2.IMREAD_UNCHANGED)
    assert grey is not None
    return grey


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    """Return the mean absolute difference of two uint8 arrays."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def relabel(msg: Any, encoding: str) -> Any:
    """Return a duck-typed copy of an Image message claiming another encoding."""
    return SimpleNamespace(
        height=msg.height, width=msg.width, encoding=encoding,
        is_bigendian=msg.is_bigendian, step=msg.step, data=msg.data,
    )


def test_accepted_encodings() -> None:
    """List exactly the 8-bit encodings the node supports, in table order."""
    assert ACCEPTED_ENCODINGS == (
        'rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8',
        'bayer_rggb8', 'bayer_bggr8', 'bayer_gbrg8', 'bayer_grbg8', 'yuv422', 'yuv422_yuy2',
    )


def test_fixture_frame_shape(frame: np.ndarray, label: np.ndarray) -> None:
    """Load the CamVid fixture frame and label at their native size."""
    assert frame.shape == (360, 480, 3) and frame.dtype == np.uint8
    assert label.shape == (360, 480) and label.dtype == np.uint8


@IMAGE_MAKERS
@pytest.mark.parametrize('encoding', ACCEPTED_ENCODINGS)
def test_decode_matches_rosbags_image(
    make: Callable[..., Any], encoding: str, frame: np.ndarray
) -> None:
    """Decode every encoding exactly as rosbags-image does (Bayer: its bilinear demosaicing)."""
    rows = encode_rgb(frame, encoding)
    msg = make(rows, frame.shape[1], encoding)
    rgb = decode(msg, 'bilinear')
    assert rgb.shape == frame.shape and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, message_to_cvimage(msg, 'rgb8'))


@IMAGE_MAKERS
@pytest.mark.parametrize('encoding', list(EXACT_ENCODINGS))
def test_round_trip_exact(make: Callable[..., Any], encoding: str, frame: np.ndarray) -> None:
    """Round-trip lossless colour encodings bit-exactly."""
    rows = encode_rgb(frame, encoding)
    assert rows.shape == (360, 480 * EXACT_ENCODINGS[encoding])
    np.testing.assert_array_equal(decode_image(make(rows, 480, encoding)), frame)


def test_encode_channel_order() -> None:
    """Write channels in the order each encoding names them."""
    rgb = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
    assert encode_rgb(rgb, 'rgb8').tolist() == [[1, 2, 3, 4, 5, 6]]
    assert encode_rgb(rgb, 'bgr8').tolist() == [[3, 2, 1, 6, 5, 4]]
    assert encode_rgb(rgb, 'rgba8').tolist() == [[1, 2, 3, 255, 4, 5, 6, 255]]
    assert encode_rgb(rgb, 'bgra8').tolist() == [[3, 2, 1, 255, 6, 5, 4, 255]]


@IMAGE_MAKERS
def test_mono8_round_trip_is_grey(make: Callable[..., Any], frame: np.ndarray) -> None:
    """Encode mono8 as BT.601 grey and decode it to three equal channels."""
    rows = encode_rgb(frame, 'mono8')
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(rows, grey)
    np.testing.assert_array_equal(decode(make(rows, 480, 'mono8')), np.dstack([grey] * 3))


def test_mono8_hand_values() -> None:
    """Match hand-computed grey levels of pure red, green and blue."""
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    assert encode_rgb(rgb, 'mono8').tolist() == [[76, 150, 29]]
    msg = SimpleNamespace(
        height=1, width=2, encoding='mono8', is_bigendian=0, step=2, data=bytes([7, 200])
    )
    assert decode(msg).tolist() == [[[7, 7, 7], [200, 200, 200]]]


@pytest.mark.parametrize('method', DEBAYER_METHODS)
@pytest.mark.parametrize('encoding', BAYER_ENCODINGS)
def test_bayer_hand_mosaic(encoding: str, method: str) -> None:
    """Demosaic a hand-made flat-colour mosaic of each pattern and re-sample it."""
    mosaic = np.tile(np.array(BAYER_TILES[encoding], dtype=np.uint8), (2, 3))
    msg = SimpleNamespace(
        height=4, width=6, encoding=encoding, is_bigendian=0, step=6, data=mosaic.tobytes()
    )
    rgb = decode(msg, method)
    assert rgb.shape == (4, 6, 3)
    assert (rgb == FLAT_RGB).all()
    flat = np.full((4, 6, 3), FLAT_RGB, dtype=np.uint8)
    np.testing.assert_array_equal(encode_rgb(flat, encoding), mosaic)


@pytest.mark.parametrize('encoding', BAYER_ENCODINGS)
def test_vng_is_the_default_and_keeps_edges_closer(encoding: str, frame: np.ndarray) -> None:
    """Demosaic with VNG unless told otherwise: nearer the original than bilinear."""
    msg = bag_image(encode_rgb(frame, encoding), 480, encoding)
    vng, bilinear = decode(msg), decode(msg, 'bilinear')
    np.testing.assert_array_equal(vng, decode(msg, 'vng'))
    assert mean_abs_error(vng, frame) < 2.6 < 3.8 < mean_abs_error(bilinear, frame)
    assert 3.8 < mean_abs_error(decode(msg, 'edge-aware'), frame) < 4.0


def test_bayer_samples_each_colour_at_its_site(frame: np.ndarray) -> None:
    """Take R, G, G, B of the rggb tile from the matching RGB channel and pixel."""
    mosaic = encode_rgb(frame, 'bayer_rggb8')
    np.testing.assert_array_equal(mosaic[0::2, 0::2], frame[0::2, 0::2, 0])
    np.testing.assert_array_equal(mosaic[0::2, 1::2], frame[0::2, 1::2, 1])
    np.testing.assert_array_equal(mosaic[1::2, 0::2], frame[1::2, 0::2, 1])
    np.testing.assert_array_equal(mosaic[1::2, 1::2], frame[1::2, 1::2, 2])


@pytest.mark.parametrize(
    ('encoding', 'rows'), [('yuv422', UYVY_ROWS), ('yuv422_yuy2', YUYV_ROWS)]
)
def test_yuv_hand_pairs(encoding: str, rows: list[list[int]]) -> None:
    """Decode hand-made UYVY / YUYV pixel pairs and encode them back."""
    data = np.array(rows, dtype=np.uint8)
    msg = SimpleNamespace(
        height=2, width=2, encoding=encoding, is_bigendian=0, step=4, data=data.tobytes()
    )
    rgb = decode(msg)
    np.testing.assert_allclose(rgb, PAIR_RGB, atol=2)
    np.testing.assert_array_equal(rgb[0], PAIR_RGB[0])
    np.testing.assert_allclose(encode_rgb(np.array(PAIR_RGB, dtype=np.uint8), encoding), data,
                               atol=2)


@IMAGE_MAKERS
@pytest.mark.parametrize('encoding', BAYER_ENCODINGS + YUV_ENCODINGS)
def test_lossy_round_trip(make: Callable[..., Any], encoding: str, frame: np.ndarray) -> None:
    """Round-trip Bayer and yuv422 encodings within a small mean error."""
    msg = make(encode_rgb(frame, encoding), 480, encoding)
    assert mean_abs_error(decode(msg), frame) < LOSSY_MAE


@pytest.mark.parametrize('encoding', BAYER_ENCODINGS)
def test_swapped_bayer_pattern_fails_tolerance(encoding: str, frame: np.ndarray) -> None:
    """Show the tolerance catches a mosaic decoded with any other pattern."""
    msg = bag_image(encode_rgb(frame, encoding), 480, encoding)
    for other in BAYER_ENCODINGS:
        if other != encoding:
            assert mean_abs_error(decode(relabel(msg, other)), frame) > LOSSY_MAE


def test_swapped_yuv_order_fails_tolerance(frame: np.ndarray) -> None:
    """Show the tolerance catches UYVY decoded as YUYV."""
    msg = bag_image(encode_rgb(frame, 'yuv422'), 480, 'yuv422')
    assert mean_abs_error(decode(relabel(msg, 'yuv422_yuy2')), frame) > LOSSY_MAE


@IMAGE_MAKERS
@pytest.mark.parametrize('encoding', ACCEPTED_ENCODINGS)
def test_row_padding(make: Callable[..., Any], encoding: str, frame: np.ndarray) -> None:
    """Decode padded rows (step > width * bpp) like unpadded ones."""
    rows = encode_rgb(frame, encoding)
    padded = np.full((rows.shape[0], rows.shape[1] + 13), 255, dtype=np.uint8)
    padded[:, :rows.shape[1]] = rows
    expected = decode(make(rows, 480, encoding))
    np.testing.assert_array_equal(decode(make(padded, 480, encoding)), expected)
    # The last row need not carry its padding.
    minimal = relabel(make(padded, 480, encoding), encoding)
    minimal.data = padded.reshape(-1)[:-13]
    np.testing.assert_array_equal(decode(minimal), expected)


def test_rgb8_is_zero_copy_view(frame: np.ndarray) -> None:
    """Return unpadded rgb8 as a read-only view of the message buffer."""
    bag_msg = bag_image(encode_rgb(frame, 'rgb8'), 480, 'rgb8')
    rgb = decode(bag_msg)
    assert np.shares_memory(rgb, bag_msg.data)
    assert not rgb.flags.writeable
    rclpy_msg = rclpy_image(encode_rgb(frame, 'rgb8'), 480, 'rgb8')
    assert isinstance(rclpy_msg.data, array.array)
    rgb = decode(rclpy_msg)
    assert np.shares_memory(rgb, np.frombuffer(rclpy_msg.data, dtype=np.uint8))
    np.testing.assert_array_equal(rgb, frame)


@pytest.mark.parametrize(
    'to_data',
    [bytes, bytearray, lambda b: array.array('B', b), lambda b: np.frombuffer(b, np.uint8)],
    ids=['bytes', 'bytearray', 'array', 'numpy'],
)
def test_data_buffer_types(to_data: Callable[[bytes], Any]) -> None:
    """Accept bytes, bytearray, array.array and numpy message data alike."""
    msg = SimpleNamespace(
        height=1, width=2, encoding='bgr8', is_bigendian=0, step=6,
        data=to_data(bytes([1, 2, 3, 4, 5, 6])),
    )
    assert decode(msg).tolist() == [[[3, 2, 1], [6, 5, 4]]]


def test_is_bigendian_ignored_for_8_bit() -> None:
    """Accept is_bigendian=1 for 8-bit encodings without byte swapping."""
    msg = SimpleNamespace(
        height=1, width=1, encoding='rgb8', is_bigendian=1, step=3, data=bytes([1, 2, 3])
    )
    assert decode(msg).tolist() == [[[1, 2, 3]]]


NAN_FLOATS = np.full((2, 3), np.nan, dtype=np.float32)
REJECTED_IMAGES = {
    'float': (NAN_FLOATS.view(np.uint8), 3, '32FC1', 0,
              r"^unsupported encoding '32FC1'; accepted: rgb8, bgr8, rgba8, .*yuv422_yuy2$"),
    'mono16': (np.zeros((2, 6), np.uint8), 3, 'mono16', 1, r"unsupported encoding 'mono16'"),
    'short_step': (np.zeros((2, 10), np.uint8), 4, 'rgb8', 0,
                   r'step 10 is shorter .* accepted: step >= 12'),
    'empty': (np.zeros((0, 0), np.uint8), 0, 'rgb8', 0, r'empty frame \(0x0\)'),
    'odd_yuv': (np.zeros((2, 6), np.uint8), 3, 'yuv422', 0, r'odd width 3'),
    'tiny_bayer': (np.zeros((2, 4), np.uint8), 4, 'bayer_rggb8', 0, r'too small to demosaic'),
}


@IMAGE_MAKERS
@pytest.mark.parametrize('case', REJECTED_IMAGES.values(), ids=REJECTED_IMAGES.keys())
def test_rejected_images(make: Callable[..., Any], case: tuple[Any, ...]) -> None:
    """Reject malformed Image messages with a one-line ImageError."""
    rows, width, encoding, is_bigendian, pattern = case
    with pytest.raises(ImageError, match=pattern) as caught:
        decode(make(rows, width, encoding, is_bigendian))
    assert '\n' not in str(caught.value)


@IMAGE_MAKERS
def test_truncated_data(make: Callable[..., Any]) -> None:
    """Report how many bytes a truncated Image needs and has."""
    msg = relabel(make(np.zeros((2, 12), np.uint8), 4, 'rgb8'), 'rgb8')
    msg.data = msg.data[:20]
    with pytest.raises(ImageError, match=r'^truncated data: .* needs 24 bytes, got 20$'):
        decode(msg)


def test_unsupported_encoding_chains_cause() -> None:
    """Chain the lookup failure as the cause of the ImageError."""
    msg = SimpleNamespace(height=1, width=1, encoding='rgb16', is_bigendian=0, step=6,
                          data=bytes(6))
    with pytest.raises(ImageError) as caught:
        decode(msg)
    assert isinstance(caught.value.__cause__, KeyError)


def test_non_contiguous_data_rejected() -> None:
    """Reject data that is not one contiguous byte buffer."""
    msg = SimpleNamespace(height=1, width=2, encoding='rgb8', is_bigendian=0, step=6,
                          data=np.arange(12, dtype=np.uint8)[::2])
    with pytest.raises(ImageError, match=r'not a contiguous byte buffer') as caught:
        decode(msg)
    assert caught.value.__cause__ is not None


@COMPRESSED_MAKERS
def test_compressed_png_exact(make: Callable[..., Any], frame: np.ndarray) -> None:
    """Round-trip an RGB frame through PNG bit-exactly."""
    data = encode_compressed(frame, 'png')
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    np.testing.assert_array_equal(decode(make(data, 'png')), frame)


@COMPRESSED_MAKERS
def test_compressed_jpeg_within_tolerance(make: Callable[..., Any], frame: np.ndarray) -> None:
    """Round-trip an RGB frame through JPEG within a small error, channels in RGB order."""
    data = encode_compressed(frame, 'jpeg')
    assert data[:2] == b'\xff\xd8'
    rgb = decode_compressed(make(data, 'jpeg'))
    assert rgb.shape == frame.shape and rgb.dtype == np.uint8
    assert mean_abs_error(rgb, frame) < 3.0
    assert mean_abs_error(rgb[..., ::-1], frame) > 10.0


@COMPRESSED_MAKERS
def test_grey_png_decodes_to_three_channels(make: Callable[..., Any], label: np.ndarray) -> None:
    """Keep a label PNG single-channel and decode it to three equal channels."""
    data = encode_compressed(label, 'png')
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), -1), label)
    np.testing.assert_array_equal(decode(make(data, 'png')), np.dstack([label] * 3))


@COMPRESSED_MAKERS
def test_mono8_png_keeps_class_ids(make: Callable[..., Any], label: np.ndarray) -> None:
    """Decode a PNG-compressed label to the exact (H, W) uint8 class ids."""
    values = decode_compressed_mono8(make(encode_compressed(label, 'png'), 'png'))
    assert values.shape == label.shape and values.dtype == np.uint8
    np.testing.assert_array_equal(values, label)


@COMPRESSED_MAKERS
@pytest.mark.parametrize(
    ('payload', 'pattern'),
    [
        ('label_jpeg', r"^CompressedImage \(format 'png'\) holds JPEG, which changes pixel"),
        ('rgb_png', r'^cannot decode \d+ bytes .* as one 8-bit channel: it decodes to uint8 '
                    r'\(360, 480, 3\); accepted: 8-bit grey'),
        ('grey16_png', r'as one 8-bit channel'),
        ('empty', r'^cannot decode 0 bytes'),
    ],
)
def test_mono8_png_rejects(make: Callable[..., Any], frame: np.ndarray, label: np.ndarray,
                           payload: str, pattern: str) -> None:
    """Refuse lossy, colour, 16-bit or empty data for class ids, naming what is accepted."""
    data = {
        'label_jpeg': lambda: encode_compressed(label, 'jpeg'),
        'rgb_png': lambda: encode_compressed(frame, 'png'),
        'grey16_png': lambda: cv2.imencode('.png', label.astype(np.uint16) * 300)[1].tobytes(),
        'empty': lambda: b'',
    }[payload]()
    with pytest.raises(ImageError, match=pattern):
        decode_compressed_mono8(make(data, 'png'))


@COMPRESSED_MAKERS
@pytest.mark.parametrize(
    ('data', 'pattern'),
    [
        (b'not an image', r"^cannot decode 12 bytes of CompressedImage data \(format 'jpeg'\)"),
        (b'', r"^empty CompressedImage data \(format 'jpeg'\)"),
    ],
    ids=['undecodable', 'empty'],
)
def test_rejected_compressed(make: Callable[..., Any], data: bytes, pattern: str) -> None:
    """Reject undecodable or empty CompressedImage data."""
    with pytest.raises(ImageError, match=pattern):
        decode(make(data, 'jpeg'))


@pytest.mark.parametrize(
    ('image', 'encoding', 'pattern'),
    [
        (np.zeros((2, 4, 3), np.uint8), '32FC1', r"unsupported encoding '32FC1'"),
        (np.zeros((2, 3, 3), np.uint8), 'yuv422', r'odd width 3'),
        (np.zeros((2, 4), np.uint8), 'rgb8', r'shape \(2, 4\); accepted: \(H, W, 3\) uint8'),
        (np.zeros((2, 4, 3), np.float32), 'rgb8', r'float32 array'),
        (np.zeros((0, 4, 3), np.uint8), 'rgb8', r'empty'),
    ],
    ids=['encoding', 'odd_yuv', 'grey', 'float', 'empty'],
)
def test_encode_rgb_rejects(image: np.ndarray, encoding: str, pattern: str) -> None:
    """Reject bad arrays, encodings and odd yuv422 widths when encoding."""
    with pytest.raises(ImageError, match=pattern):
        encode_rgb(image, encoding)


@pytest.mark.parametrize(
    ('image', 'fmt', 'pattern'),
    [
        (np.zeros((2, 4, 3), np.uint8), 'bmp',
         r"^unsupported compressed format 'bmp'; accepted: jpeg, png$"),
        (np.zeros((2, 4, 4), np.uint8), 'png', r'shape \(2, 4, 4\)'),
        (np.zeros((2, 4), np.uint16), 'png', r'uint16 array'),
    ],
    ids=['format', 'rgba', 'uint16'],
)
def test_encode_compressed_rejects(image: np.ndarray, fmt: str, pattern: str) -> None:
    """Reject unknown formats and unsupported arrays when compressing."""
    with pytest.raises(ImageError, match=pattern):
        encode_compressed(image, fmt)
