"""Convert sensor_msgs Image / CompressedImage messages to and from RGB arrays.

Messages are duck-typed, so rclpy messages, rosbags messages and test doubles all work:
an Image has ``height, width, encoding, is_bigendian, step, data`` and a CompressedImage
has ``format, data``; ``data`` may be ``bytes``, ``array.array('B')`` or a 1-D uint8 array.
Only numpy and cv2 are used (no rclpy).

Hostile input: a frame's pixel count is checked against ``max_image_pixels`` before anything
is allocated (raw: from height and width; compressed: from the JPEG SOF / PNG IHDR header,
read without decoding), and what libpng, libjpeg or OpenCV print to stderr while decoding is
captured into the ImageError (or the warning) of that frame instead of reaching the console.
"""

import os
import re
import sys
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import cv2
import numpy as np

from seg_node.core.errors import ImageError

_NATIVE_BIG_ENDIAN = int(sys.byteorder == 'big')


def is_bigendian_flag(dtype: np.dtype | type) -> int:
    """Return the Image ``is_bigendian`` value for native pixels of ``dtype`` (0 for 8-bit)."""
    return _NATIVE_BIG_ENDIAN if np.dtype(dtype).itemsize > 1 else 0


class _Layout(NamedTuple):
    """How one ROS encoding stores pixels and which cv2 codes convert it."""

    bytes_per_pixel: int
    to_rgb: int | None  # cv2.cvtColor code to RGB; None: RGB already, or a Bayer mosaic.
    from_rgb: int | None  # cv2.cvtColor code from RGB; None: identity (rgb8) or Bayer sampling.
    mosaic: str = ''  # Bayer colours of the top-left 2x2 tile, row-major, e.g. 'rggb'.
    even_width: bool = False  # One U/V pair spans two pixels.


# Demosaicing methods for Bayer frames, the default first. VNG (variable number of
# gradients) costs ~1.5 ms per 360x480 frame against ~0.05 ms for bilinear, and keeps fine
# edges free of the colour fringes that bilinear interpolation leaves; bilinear is what
# cv_bridge and rosbags-image do. edge-aware is OpenCV's cheap middle ground.
DEBAYER_METHODS: tuple[str, ...] = ('vng', 'bilinear', 'edge-aware')
_DEBAYER_SUFFIXES = {'vng': '_VNG', 'bilinear': '', 'edge-aware': '_EA'}

# OpenCV names Bayer patterns by the second row's 2nd and 3rd pixels, so ROS 'rggb'
# (top-left R G / G B) is OpenCV 'BG'; checked against hand-made mosaics and rosbags-image.
_OPENCV_BAYER_PATTERNS = {'rggb': 'BG', 'bggr': 'RG', 'gbrg': 'GR', 'grbg': 'GB'}
_DEBAYER_CODES: dict[tuple[str, str], int] = {
    (mosaic, method): getattr(cv2, f'COLOR_Bayer{pattern}2RGB{suffix}')
    for mosaic, pattern in _OPENCV_BAYER_PATTERNS.items()
    for method, suffix in _DEBAYER_SUFFIXES.items()
}

_LAYOUTS: dict[str, _Layout] = {
    'rgb8': _Layout(3, None, None),
    'bgr8': _Layout(3, cv2.COLOR_BGR2RGB, cv2.COLOR_RGB2BGR),
    'rgba8': _Layout(4, cv2.COLOR_RGBA2RGB, cv2.COLOR_RGB2RGBA),
    'bgra8': _Layout(4, cv2.COLOR_BGRA2RGB, cv2.COLOR_RGB2BGRA),
    'mono8': _Layout(1, cv2.COLOR_GRAY2RGB, cv2.COLOR_RGB2GRAY),
    'bayer_rggb8': _Layout(1, None, None, mosaic='rggb'),
    'bayer_bggr8': _Layout(1, None, None, mosaic='bggr'),
    'bayer_gbrg8': _Layout(1, None, None, mosaic='gbrg'),
    'bayer_grbg8': _Layout(1, None, None, mosaic='grbg'),
    'yuv422': _Layout(2, cv2.COLOR_YUV2RGB_UYVY, cv2.COLOR_RGB2YUV_UYVY, even_width=True),
    'yuv422_yuy2': _Layout(2, cv2.COLOR_YUV2RGB_YUY2, cv2.COLOR_RGB2YUV_YUY2, even_width=True),
}

ACCEPTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)
_ACCEPTED_LIST = ', '.join(ACCEPTED_ENCODINGS)

_COMPRESSED_FORMATS = {'jpeg': '.jpg', 'png': '.png'}
_ACCEPTED_FORMATS = ', '.join(_COMPRESSED_FORMATS)
_JPEG_MAGIC = b'\xff\xd8'  # every JPEG stream starts with the SOI marker
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'

# Default pixel budget: 4096x4096 = 2**24 pixels, twice a 4K UHD frame (3840x2160). At this
# size the decoded frame and the node's full-size outputs (labels, confidence, colour,
# overlay) take ~300 MB; one class_confidence/* output adds 64 MB.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
# JPEG markers that carry a frame header (SOF0-3, 5-7, 9-11, 13-15; not DHT C4, JPG C8, DAC CC)
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# Real files have a handful of segments (APPn, DQT, DHT) before the frame header; an ICC
# profile spans at most 255 APP2 segments. More is garbage: stop reading (bounds the time).
_JPEG_MAX_SEGMENTS = 1024
_JPEG_MARKER = re.compile(rb'\xff[^\xff\x00]')  # last fill byte and a marker code (FF00: data)
# cv2 demosaicing silently returns an all-black image below 3x3 pixels.
_BAYER_MIN_SIZE = 3
_TILE_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _layout(encoding: str) -> _Layout:
    """Look up an encoding, raising ImageError naming the accepted ones."""
    try:
        return _LAYOUTS[encoding]
    except KeyError as err:
        raise ImageError(
            f'unsupported encoding {encoding!r}; accepted: {_ACCEPTED_LIST}'
        ) from err


def _as_bytes(data: Any) -> np.ndarray:
    """View message data (bytes, array.array('B') or uint8 array) as 1-D uint8 without a copy."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as err:
        raise ImageError(
            f'message data of type {type(data).__name__} is not a contiguous byte buffer; '
            'accepted: bytes, array.array or a contiguous uint8 numpy array'
        ) from err


class ImageSize(NamedTuple):
    """Size of a compressed image as its header states it."""

    kind: str  # 'jpeg' or 'png'
    width: int
    height: int


def _jpeg_size(data: memoryview) -> ImageSize:
    """Read width and height from the first SOFn segment of JPEG bytes (SOI already checked)."""
    position = 2
    for _ in range(_JPEG_MAX_SEGMENTS):
        # like libjpeg, skip fill bytes and any garbage before the next marker
        match = _JPEG_MARKER.search(data, position)
        if match is None:
            raise ImageError(f'JPEG data ends at byte {len(data)} before the frame header '
                             '(SOF); it is truncated')
        at = match.end() - 1  # the marker code; its segment's length follows
        marker = data[at]
        position = at + 1
        if marker in _JPEG_STANDALONE_MARKERS:
            continue
        if marker in (_JPEG_SOS, _JPEG_EOI):
            raise ImageError(f'JPEG has no frame header (SOF) before marker 0x{marker:02X} at '
                             f'byte {at - 1}; the data is not a JPEG image')
        # length (2), then in a frame header: precision (1), height (2), width (2)
        if position + (7 if marker in _JPEG_SOF_MARKERS else 2) > len(data):
            raise ImageError(f'JPEG data ends at byte {len(data)} inside the header segment '
                             f'0x{marker:02X}; it is truncated')
        if marker in _JPEG_SOF_MARKERS:
            return ImageSize('jpeg', width=int.from_bytes(data[position + 5:position + 7]),
                             height=int.from_bytes(data[position + 3:position + 5]))
        length = int.from_bytes(data[position:position + 2])
        if length < 2:
            raise ImageError(f'JPEG segment 0x{marker:02X} at byte {at - 1} has length '
                             f'{length}; the data is not a JPEG image')
        position += length
    raise ImageError(f'JPEG has no frame header (SOF) in its first {_JPEG_MAX_SEGMENTS} '
                     'segments; the data is not a camera image')


def read_image_size(data: Any) -> ImageSize:
    """Read a JPEG's or PNG's width and height from its header, without decoding pixels.

    Args:
        data: the file bytes (bytes, array.array('B') or 1-D uint8 array).

    Returns:
        The format and the size the decoder would allocate for.

    Raises:
        ImageError: neither JPEG nor PNG, or the header is truncated or malformed.

    """
    view = memoryview(_as_bytes(data))
    if view[:2] == _JPEG_MAGIC:
        size = _jpeg_size(view)
    elif view[:8] == _PNG_MAGIC:
        # signature, then the IHDR chunk: length (4), type (4), width (4), height (4), ...
        if len(view) < 24:
            raise ImageError(f'PNG ends at byte {len(view)} inside its IHDR header; the data '
                             'is truncated')
        if view[12:16] != b'IHDR':
            raise ImageError('PNG does not start with an IHDR chunk; the data is not a PNG '
                             'image')
        size = ImageSize('png', width=int.from_bytes(view[16:20]),
                         height=int.from_bytes(view[20:24]))
    else:
        raise ImageError(f'data starts with {bytes(view[:8]).hex(" ")}, neither a JPEG (ff d8) '
                         'nor a PNG signature')
    if size.width == 0 or size.height == 0:
        raise ImageError(f'{size.kind} header states an empty {size.width}x{size.height} image')
    return size


def check_pixel_budget(width: int, height: int, max_image_pixels: int, what: str) -> None:
    """Refuse a frame of more than ``max_image_pixels`` pixels (``what``: e.g. 'png image').

    Raises:
        ImageError: naming the size, the limit and the parameter that raises it.

    """
    if width * height > max_image_pixels:
        raise ImageError(
            f'{what} of {width}x{height} = {width * height} pixels exceeds max_image_pixels '
            f'{max_image_pixels}; raise the max_image_pixels parameter to accept it')


def _check_image(image: np.ndarray, allow_grey: bool) -> None:
    """Check that an array to encode is a non-empty uint8 RGB (or, if allowed, grey) image."""
    accepted = '(H, W, 3) or (H, W) uint8' if allow_grey else '(H, W, 3) uint8'
    is_rgb = image.ndim == 3 and image.shape[2] == 3
    is_grey = allow_grey and image.ndim == 2
    if image.dtype != np.uint8 or not (is_rgb or is_grey):
        raise ImageError(
            f'cannot encode a {image.dtype} array of shape {image.shape}; accepted: {accepted}'
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f'cannot encode an empty {image.shape} image; accepted: H, W >= 1')


def decode_image(msg: Any, debayer: str = DEBAYER_METHODS[0],
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Convert a sensor_msgs/Image to RGB.

    Args:
        msg: Image message in one of ACCEPTED_ENCODINGS, rows possibly padded (step).
        debayer: demosaicing method for Bayer encodings, one of DEBAYER_METHODS (checked by
            the callers that take it from users: the node and eval-bag).
        max_image_pixels: refuse frames of more pixels (from height and width, first).

    Returns:
        (H, W, 3) uint8 RGB; for unpadded rgb8 a read-only view of ``msg.data``.

    Raises:
        ImageError: empty frame, too many pixels, unsupported encoding, short step,
            truncated data, odd width for yuv422 or a Bayer frame smaller than 3x3.

    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageError(f'empty frame ({width}x{height}); accepted: width and height >= 1')
    check_pixel_budget(width, height, max_image_pixels, f'{msg.encoding} Image')
    layout = _layout(msg.encoding)
    if layout.even_width and width % 2:
        raise ImageError(
            f'{msg.encoding} frame has odd width {width}; accepted: an even width '
            '(each U/V pair spans two pixels)'
        )
    if layout.mosaic and min(height, width) < _BAYER_MIN_SIZE:
        raise ImageError(
            f'{msg.encoding} frame {width}x{height} is too small to demosaic; '
            f'accepted: at least {_BAYER_MIN_SIZE}x{_BAYER_MIN_SIZE}'
        )
    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        raise ImageError(
            f'step {step} is shorter than a {msg.encoding} row of width {width}; '
            f'accepted: step >= {row_bytes}'
        )
    buffer = _as_bytes(msg.data)
    expected = step * (height - 1) + row_bytes
    if buffer.size < expected:
        raise ImageError(
            f'truncated data: {width}x{height} {msg.encoding} with step {step} needs '
            f'{expected} bytes, got {buffer.size}'
        )
    rows = np.ndarray((height, row_bytes), dtype=np.uint8, buffer=buffer, strides=(step, 1))
    rows.flags.writeable = False
    if layout.bytes_per_pixel == 1:
        pixels = rows
    else:
        pixels = rows.reshape(height, width, layout.bytes_per_pixel)
    if layout.mosaic:
        return cv2.cvtColor(pixels, _DEBAYER_CODES[layout.mosaic, debayer])
    if layout.to_rgb is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, layout.to_rgb)


# OpenCV's own log prefix, e.g. '[ WARN:0@0.039] global grfmt_png.cpp:793 readFromStream '.
_OPENCV_LOG_PREFIX = re.compile(r'^\[ ?[A-Z]+:[^\]]*\] global \S+ \S+ ')
_NATIVE_TEXT_LIMIT = 1024  # bytes of captured decoder output kept per frame
_STDERR_FD = 2


class _NativeStderr:
    """Captures what native libraries write to file descriptor 2 while a call runs.

    libpng and libjpeg print errors and warnings straight to the process's stderr, once per
    bad frame and unthrottled; cv2's log level does not reach them. The capture swaps fd 2
    for an in-memory file around the call (a lock serialises callers). Anything another
    thread writes to fd 2 in that window is captured too; the caller writes back what it does
    not use.
    """

    def __init__(self) -> None:
        """Create the lock; the memory file is made on first use."""
        self._lock = threading.Lock()
        self._fd: int | None = None

    def call(self, function: Callable[[], Any]) -> tuple[Any, Exception | None, str]:
        """Run ``function``; return its result (None on error), its exception and the text."""
        with self._lock:
            if self._fd is None:
                self._fd = os.memfd_create('seg_node_decoder_stderr')
            saved = os.dup(_STDERR_FD)
            os.dup2(self._fd, _STDERR_FD)
            result, error = None, None
            try:
                result = function()
            except Exception as err:  # cv2.error; re-raised by the caller with the text
                error = err
            finally:
                os.dup2(saved, _STDERR_FD)
                os.close(saved)
            written = os.lseek(self._fd, 0, os.SEEK_CUR)
            if not written:
                return result, error, ''
            text = os.pread(self._fd, min(written, _NATIVE_TEXT_LIMIT), 0)
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
        lines = (_OPENCV_LOG_PREFIX.sub('', line.strip())
                 for line in text.decode(errors='replace').splitlines())
        return result, error, '; '.join(line for line in lines if line)


_native_stderr = _NativeStderr()


def _write_stderr(text: str) -> None:
    """Print a decoder's warning to stderr, as it would have appeared (default on_warning)."""
    print(text, file=sys.stderr)


def _imdecode(buffer: np.ndarray, flags: int, max_image_pixels: int,
              on_warning: Callable[[str], None], problem: str, accepted: str) -> np.ndarray:
    """Decode JPEG/PNG bytes with cv2 once their header's size fits the pixel budget.

    Args:
        buffer: 1-D uint8 file bytes.
        flags: cv2.imdecode flags.
        max_image_pixels: refuse larger images before decoding.
        on_warning: receives what the native decoder printed for an image it still decoded
            (e.g. 'Corrupt JPEG data: 2 extraneous bytes before marker 0xd9').
        problem: start of the error message, e.g. 'cannot decode 12 bytes of ...'.
        accepted: end of the error message, e.g. 'accepted: JPEG or PNG bytes'.

    Raises:
        ImageError: '{problem}: {why}; {accepted}', ``why`` from the header check or the
            decoder's own output; or the pixel budget's message.

    """
    try:
        size = read_image_size(buffer)
    except ImageError as err:
        raise ImageError(f'{problem}: {err}; {accepted}') from err
    check_pixel_budget(size.width, size.height, max_image_pixels, f'{size.kind} image')
    image, error, native = _native_stderr.call(lambda: cv2.imdecode(buffer, flags))
    if image is None:
        why = native or (str(error).strip().splitlines()[-1] if error else
                         'OpenCV decoded no image (corrupt or truncated data)')
        raise ImageError(f'{problem}: {why}; {accepted}') from error
    if native:
        on_warning(native)
    return image


def decode_compressed(msg: Any, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                      on_warning: Callable[[str], None] = _write_stderr) -> np.ndarray:
    """Convert a sensor_msgs/CompressedImage (JPEG or PNG) to RGB.

    Args:
        msg: CompressedImage message; the image type is taken from the data, not ``format``.
        max_image_pixels: refuse images whose header states more pixels, before decoding.
        on_warning: receives what the decoder printed for a frame it still decoded.

    Returns:
        (H, W, 3) uint8 RGB (grey images are expanded to three channels).

    Raises:
        ImageError: empty data, neither JPEG nor PNG, a bad header, too many pixels, or
            undecodable data (with the decoder's own message).

    """
    buffer = _as_bytes(msg.data)
    if buffer.size == 0:
        raise ImageError(
            f'empty CompressedImage data (format {msg.format!r}); accepted: JPEG or PNG bytes'
        )
    problem = f'cannot decode {buffer.size} bytes of CompressedImage data (format {msg.format!r})'
    image = _imdecode(buffer, cv2.IMREAD_COLOR, max_image_pixels, on_warning, problem,
                      'accepted: JPEG or PNG bytes')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_compressed_mono8(msg: Any, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                            on_warning: Callable[[str], None] = _write_stderr) -> np.ndarray:
    """Convert a lossless single-channel CompressedImage (PNG, e.g. class ids) to an array.

    Args:
        msg: CompressedImage message whose data is an 8-bit greyscale PNG.
        max_image_pixels: refuse images whose header states more pixels, before decoding.
        on_warning: receives what the decoder printed for an image it still decoded.

    Returns:
        (H, W) uint8 values exactly as stored.

    Raises:
        ImageError: empty data, JPEG (lossy) data, not 8-bit single-channel, too many
            pixels, or undecodable.

    """
    buffer = _as_bytes(msg.data)
    if buffer[:2].tobytes() == _JPEG_MAGIC:
        raise ImageError(f'CompressedImage (format {msg.format!r}) holds JPEG, which changes '
                         'pixel values; compress class ids as PNG or send them as mono8')
    problem = (f'cannot decode {buffer.size} bytes of CompressedImage data (format '
               f'{msg.format!r}) as one 8-bit channel')
    accepted = 'accepted: 8-bit greyscale PNG'
    values = _imdecode(buffer, cv2.IMREAD_UNCHANGED, max_image_pixels, on_warning, problem,
                       accepted)
    if values.ndim != 2 or values.dtype != np.uint8:
        raise ImageError(f'{problem}: it decodes to {values.dtype} {values.shape}; {accepted}')
    return values


def decode(msg: Any, debayer: str = DEBAYER_METHODS[0],
           max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
           on_warning: Callable[[str], None] = _write_stderr) -> np.ndarray:
    """Convert an Image or CompressedImage (recognised by its ``format`` field) to RGB.

    Args:
        msg: sensor_msgs Image or CompressedImage message.
        debayer: demosaicing method for Bayer Images, one of DEBAYER_METHODS.
        max_image_pixels: refuse larger frames before decoding or allocating anything.
        on_warning: receives what a native decoder printed for a frame it still decoded.

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        ImageError: the message cannot be decoded (see decode_image, decode_compressed).

    """
    if hasattr(msg, 'format'):
        return decode_compressed(msg, max_image_pixels, on_warning)
    return decode_image(msg, debayer, max_image_pixels)


def encode_rgb(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """Convert RGB pixels to the raw rows of an Image message in ``encoding``.

    Bayer encodings sample each colour at its mosaic sites; yuv422 (UYVY) and
    yuv422_yuy2 (YUYV) use OpenCV's BT.601 video-range conversion with U/V averaged
    over horizontal pixel pairs, matching what decode_image expects.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        encoding: one of ACCEPTED_ENCODINGS.

    Returns:
        (H, W * bytes_per_pixel) uint8 C-contiguous rows; use ``step = result.shape[1]``.
        For rgb8 this may share memory with ``rgb``.

    Raises:
        ImageError: bad array, unsupported encoding or odd width for yuv422.

    """
    _check_image(rgb, allow_grey=False)
    layout = _layout(encoding)
    height, width = rgb.shape[:2]
    if layout.even_width and width % 2:
        raise ImageError(
            f'cannot encode odd width {width} as {encoding}; accepted: an even width'
        )
    if layout.mosaic:
        encoded = np.empty((height, width), dtype=np.uint8)
        for (dy, dx), colour in zip(_TILE_OFFSETS, layout.mosaic, strict=True):
            encoded[dy::2, dx::2] = rgb[dy::2, dx::2, 'rgb'.index(colour)]
    elif layout.from_rgb is None:
        encoded = np.ascontiguousarray(rgb)
    else:
        encoded = cv2.cvtColor(rgb, layout.from_rgb)
    return encoded.reshape(height, width * layout.bytes_per_pixel)


def encode_compressed(image: np.ndarray, fmt: str) -> bytes:
    """Compress an RGB or single-channel image to JPEG or PNG bytes.

    Args:
        image: (H, W, 3) uint8 RGB or (H, W) uint8 single channel (e.g. class labels).
        fmt: 'jpeg' (lossy) or 'png' (lossless).

    Returns:
        The encoded file bytes, suitable for CompressedImage.data.

    Raises:
        ImageError: bad array, unknown format or an encoder failure.

    """
    _check_image(image, allow_grey=True)
    try:
        extension = _COMPRESSED_FORMATS[fmt]
    except KeyError as err:
        raise ImageError(
            f'unsupported compressed format {fmt!r}; accepted: {_ACCEPTED_FORMATS}'
        ) from err
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, encoded = cv2.imencode(extension, pixels)
    if not ok:
        raise ImageError(f'cv2 could not encode the {image.shape} image as {fmt}')
    return encoded.tobytes()
