"""image_codec against hostile input: header sizes, the pixel budget and native decoder output."""

import os
import re
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from seg_node.core.errors import ImageError
from seg_node.core.image_codec import (DEFAULT_MAX_IMAGE_PIXELS, decode, decode_compressed,
                                       decode_compressed_mono8, decode_image,
                                       encode_compressed, ImageSize, read_image_size)
from seg_node.tools.hostile_inputs import (grey_png, jpeg_bomb, malformed_compressed,
                                           malformed_images, png_bomb, SOF0)

BUDGET = r'exceeds max_image_pixels {limit}; raise the max_image_pixels parameter to accept it$'


def compressed(data: bytes, fmt: str = 'jpeg') -> CompressedImage:
    """Build an rclpy CompressedImage."""
    return CompressedImage(format=fmt, data=data)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any call of cv2.imdecode fail the test: the frame must be refused before it."""
    def imdecode(*args: object) -> None:
        raise AssertionError('cv2.imdecode was called')
    monkeypatch.setattr(cv2, 'imdecode', imdecode)


@pytest.mark.parametrize('kind, parameters, marker', [
    ('.jpg', [], SOF0),
    ('.jpg', [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], b'\xff\xc2'),
    ('.png', [], b'IHDR'),
])
@pytest.mark.parametrize('channels', [3, 1])
def test_header_size_of_real_frames(camvid_rgb, kind, parameters, marker, channels):
    image = camvid_rgb if channels == 3 else camvid_rgb[:, :, 1]
    data = cv2.imencode(kind, image, parameters)[1].tobytes()
    assert marker in data[:700]
    assert read_image_size(data) == ImageSize(kind.strip('.').replace('jpg', 'jpeg'), 480, 360)


def test_jpeg_header_with_exif_fill_bytes_and_garbage(camvid_rgb):
    """Segments before the frame header, fill bytes and stray bytes are skipped like libjpeg."""
    jpeg = encode_compressed(camvid_rgb, 'jpeg')
    app1 = b'\xff\xe1' + (2 + 300).to_bytes(2) + bytes(range(256)) + b'\xff' * 44
    at = jpeg.index(SOF0)
    data = jpeg[:2] + app1 + jpeg[2:at] + b'\x17\x00\xff\xff\xff' + jpeg[at:]
    assert read_image_size(data) == ImageSize('jpeg', 480, 360)
    assert decode_compressed(compressed(data), on_warning=lambda text: None).shape == (
        360, 480, 3)


@pytest.mark.usefixtures('no_decoding')
def test_jpeg_bomb_is_refused_from_its_header(camvid_rgb):
    bomb = jpeg_bomb(camvid_rgb)
    assert len(bomb) < 100_000 and read_image_size(bomb) == ImageSize('jpeg', 30000, 30000)
    limit = DEFAULT_MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match=r'^jpeg image of 30000x30000 = 900000000 pixels '
                       + BUDGET.format(limit=limit)):
        decode(compressed(bomb))


@pytest.mark.usefixtures('no_decoding')
def test_png_bomb_is_refused_from_its_header():
    bomb = png_bomb()
    assert len(bomb) < 500_000 and read_image_size(bomb) == ImageSize('png', 20000, 20000)
    with pytest.raises(ImageError, match=r'^png image of 20000x20000 = 400000000 pixels '):
        decode_compressed(compressed(bomb, 'png'))
    with pytest.raises(ImageError, match=r'^png image of 20000x20000'):
        decode_compressed_mono8(compressed(bomb, 'png'))


def test_generated_grey_png_is_valid():
    """The bomb generator writes real PNGs: a small one decodes to its zeros, CRCs checked."""
    values = decode_compressed_mono8(compressed(grey_png(301, 200), 'png'))
    assert values.shape == (200, 301) and values.dtype == np.uint8 and not values.any()


def test_budget_is_the_parameter_and_inclusive(camvid_rgb):
    jpeg = encode_compressed(camvid_rgb, 'jpeg')
    assert decode(compressed(jpeg), max_image_pixels=480 * 360).shape == (360, 480, 3)
    with pytest.raises(ImageError, match=BUDGET.format(limit=480 * 360 - 1)):
        decode(compressed(jpeg), max_image_pixels=480 * 360 - 1)
    raw = Image(height=360, width=480, encoding='rgb8', step=1440,
                data=camvid_rgb.tobytes())
    np.testing.assert_array_equal(decode(raw, max_image_pixels=480 * 360), camvid_rgb)
    with pytest.raises(ImageError, match=r'^rgb8 Image of 480x360 = 172800 pixels exceeds'):
        decode_image(raw, max_image_pixels=1000)


@pytest.mark.usefixtures('no_decoding')
def test_raw_frame_with_lying_size_is_refused_before_its_data_is_read():
    """A huge height/width over a few bytes names the budget, not the missing bytes."""
    msg = SimpleNamespace(height=2**32 - 1, width=2**32 - 1, encoding='bayer_rggb8',
                          is_bigendian=0, step=2**32 - 1, data=b'\x00' * 16)
    with pytest.raises(ImageError, match=r'^bayer_rggb8 Image of 4294967295x4294967295 = '):
        decode_image(msg)


@pytest.mark.usefixtures('no_decoding')
@pytest.mark.parametrize('cut, pattern', [
    (1, r'neither a JPEG \(ff d8\) nor a PNG signature'),
    (30, r'JPEG data ends at byte 30 .*truncated'),
    ('sof', r'inside the header segment 0xC0; it is truncated'),
])
def test_truncated_jpeg_headers(camvid_rgb, cut, pattern):
    jpeg = encode_compressed(camvid_rgb, 'jpeg')
    data = jpeg[:jpeg.index(SOF0) + 6] if cut == 'sof' else jpeg[:cut]
    with pytest.raises(ImageError, match=r"^cannot decode \d+ bytes of CompressedImage data "
                       r"\(format 'jpeg'\): .*" + pattern + '; accepted: JPEG or PNG bytes$'):
        decode(compressed(data))


@pytest.mark.usefixtures('no_decoding')
@pytest.mark.parametrize('data, pattern', [
    (lambda png: png[:20], r'PNG ends at byte 20 inside its IHDR header'),
    (lambda png: png[:12] + b'IDAT' + png[16:], r'does not start with an IHDR chunk'),
    (lambda png: png[:16] + bytes(4) + png[20:], r'png header states an empty 0x360 image'),
    (lambda png: b'\xff\xd8\xff\xda' + png, r'no frame header \(SOF\) before marker 0xDA'),
    (lambda png: cv2.imencode('.bmp', np.zeros((4, 4), np.uint8))[1].tobytes(),
     r'data starts with 42 4d .*neither a JPEG'),
], ids=['png_cut', 'no_ihdr', 'zero_width', 'jpeg_scan_first', 'bmp'])
def test_malformed_headers_are_refused_without_decoding(camvid_rgb, data, pattern):
    with pytest.raises(ImageError, match=pattern):
        decode(compressed(data(encode_compressed(camvid_rgb, 'png')), 'png'))


def test_libpng_error_is_part_of_the_message_not_stderr(camvid_rgb, capfd):
    png = encode_compressed(camvid_rgb, 'png')
    with pytest.raises(ImageError, match=r'\(format \'png\'\): libpng error: PNG input buffer '
                       r'is incomplete; accepted: JPEG or PNG bytes$'):
        decode(compressed(png[:len(png) // 2], 'png'))
    os.write(2, b'stderr still works\n')
    assert capfd.readouterr().err == 'stderr still works\n'


def test_libjpeg_warning_of_a_decodable_frame_goes_to_on_warning(camvid_rgb, capfd):
    jpeg = encode_compressed(camvid_rgb, 'jpeg')
    corrupt = jpeg[:-2] + bytes(5) + jpeg[-2:]  # stray bytes before the EOI marker
    warnings: list[str] = []
    rgb = decode(compressed(corrupt), on_warning=warnings.append)
    assert len(warnings) == 1
    assert re.fullmatch(r'Corrupt JPEG data: \d extraneous bytes before marker 0xd9', warnings[0])
    np.testing.assert_array_equal(rgb, decode(compressed(jpeg)))
    assert capfd.readouterr().err == ''
    decode(compressed(corrupt))  # by default the warning still reaches stderr, once
    assert capfd.readouterr().err == warnings[0] + '\n'


def test_generated_malformed_messages_are_all_refused(camvid_rgb, capfd):
    """Every generated broken payload and raw frame ends in one ImageError, nothing on stderr."""
    rng = np.random.default_rng(0)
    for data in malformed_compressed(rng, camvid_rgb, 100) + [jpeg_bomb(camvid_rgb),
                                                              png_bomb()]:
        with pytest.raises(ImageError):
            decode(compressed(data), on_warning=pytest.fail)
    for fields in malformed_images(rng, camvid_rgb, 70):
        with pytest.raises(ImageError):
            decode(Image(**fields))
    assert capfd.readouterr().err == ''
