"""Hostile camera input for tests and measurements: decompression bombs, malformed messages."""

import struct
import zlib

import cv2
import numpy as np

from seg_node.core.image_codec import encode_compressed, encode_rgb

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
SOF0 = b'\xff\xc0'
BOMB_SIDE = {'jpeg': 30000, 'png': 20000}


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """Return one PNG chunk: length, type, payload and CRC."""
    return (struct.pack('>I', len(payload)) + kind + payload
            + struct.pack('>I', zlib.crc32(kind + payload)))


def grey_png(width: int, height: int, rows_per_block: int = 100) -> bytes:
    """Return a valid 8-bit grey PNG of zeros, written without compressing every byte.

    The IDAT stream repeats one fully flushed deflate block of ``rows_per_block`` zero rows
    (identical each time, as a full flush resets the compressor) and ends with the Adler-32
    of all-zero data, (n mod 65521) << 16 | 1. A 20000x20000 image takes ~0.05 s and ~390 KB.
    """
    if height % rows_per_block:
        raise ValueError(f'height {height} is not a multiple of {rows_per_block}')
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes((width + 1) * rows_per_block))
    block += compressor.flush(zlib.Z_FULL_FLUSH)
    raw_size = (width + 1) * height  # a filter byte (0) before each row
    stream = (b'\x78\xda' + block * (height // rows_per_block)
              + compressor.flush(zlib.Z_FINISH)
              + struct.pack('>I', (raw_size % 65521) << 16 | 1))
    header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
    return (PNG_SIGNATURE + png_chunk(b'IHDR', header) + png_chunk(b'IDAT', stream)
            + png_chunk(b'IEND', b''))


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Return ``jpeg`` with the size fields of its SOF0 frame header replaced."""
    at = jpeg.index(SOF0)  # marker (2), length (2), precision (1), height (2), width (2)
    return jpeg[:at + 5] + struct.pack('>HH', height, width) + jpeg[at + 9:]


def jpeg_bomb(rgb: np.ndarray) -> bytes:
    """Return a real frame's JPEG claiming to be 30000x30000 (a 2.7 GB decode)."""
    side = BOMB_SIDE['jpeg']
    return jpeg_with_size(encode_compressed(rgb, 'jpeg'), side, side)


def png_bomb() -> bytes:
    """Return a valid ~390 KB PNG of a 20000x20000 grey image (400 M pixels)."""
    side = BOMB_SIDE['png']
    return grey_png(side, side)


def malformed_compressed(rng: np.random.Generator, rgb: np.ndarray, count: int) -> list[bytes]:
    """Return ``count`` broken JPEG/PNG payloads made from a real frame, none decodable whole.

    Kinds, in turn: truncated files (header or pixel data cut), corrupted IDAT (CRC error),
    random bytes, formats OpenCV reads but the node refuses (BMP, TIFF), zero and oversized
    header sizes.
    """
    jpeg, png = encode_compressed(rgb, 'jpeg'), encode_compressed(rgb, 'png')
    bmp, tiff = (cv2.imencode(extension, rgb[:40, :40])[1].tobytes()
                 for extension in ('.bmp', '.tiff'))
    idat = png.index(b'IDAT') + 4
    makers = [
        lambda: jpeg[:rng.integers(2, 600)],
        lambda: png[:rng.integers(8, 33)],
        lambda: png[:rng.integers(idat + 10, len(png) - 20)],
        lambda: png[:idat + 50] + bytes(rng.integers(0, 256, 64, np.uint8)) + png[idat + 114:],
        lambda: bytes(rng.integers(0, 256, rng.integers(1, 4096), np.uint8)),
        lambda: bmp,
        lambda: tiff,
        lambda: jpeg_with_size(jpeg, 0, int(rng.integers(1, 1000))),
        lambda: jpeg_with_size(jpeg, int(rng.integers(4097, 65536)),
                               int(rng.integers(4097, 65536))),
        lambda: PNG_SIGNATURE + png_chunk(b'IHDR', struct.pack(
            '>IIBBBBB', int(rng.integers(5000, 2**31)), int(rng.integers(5000, 2**31)),
            8, 2, 0, 0, 0)),
    ]
    return [makers[index % len(makers)]() for index in range(count)]


def malformed_images(rng: np.random.Generator, rgb: np.ndarray, count: int) -> list[dict]:
    """Return ``count`` field sets of broken sensor_msgs/Image messages made from a real frame.

    Kinds, in turn: lying sizes (huge height/width with little data), short step, truncated
    data, unsupported encodings, empty frames, odd-width yuv422, tiny Bayer frames.
    """
    rows = encode_rgb(rgb, 'rgb8')
    height, row_bytes = rows.shape
    data = rows.tobytes()
    makers = [
        lambda: dict(encoding='rgb8', height=int(rng.integers(5000, 2**32)),
                     width=int(rng.integers(5000, 2**32)), step=row_bytes, data=data),
        lambda: dict(encoding='rgb8', height=height, width=rgb.shape[1],
                     step=int(rng.integers(1, row_bytes)), data=data),
        lambda: dict(encoding='bgr8', height=height, width=rgb.shape[1], step=row_bytes,
                     data=data[:int(rng.integers(0, len(data) - 1))]),
        lambda: dict(encoding=str(rng.choice(['32FC1', 'mono16', 'nv12', '', 'rgb8 '])),
                     height=height, width=rgb.shape[1], step=row_bytes, data=data),
        lambda: dict(encoding='mono8', height=0, width=int(rng.integers(0, 100)), step=0,
                     data=b''),
        lambda: dict(encoding='yuv422', height=4, width=7, step=14, data=bytes(56)),
        lambda: dict(encoding='bayer_rggb8', height=2, width=int(rng.integers(1, 100)),
                     step=100, data=bytes(200)),
    ]
    return [makers[index % len(makers)]() for index in range(count)]
