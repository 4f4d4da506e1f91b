"""Reusable sensor_msgs output messages whose pixel storage numpy writes into directly."""

import array

import numpy as np
from sensor_msgs.msg import Image

from seg_node.core.image_codec import is_bigendian_flag


def copy_header(msg: object, header: object) -> None:
    """Copy ``header``'s stamp and frame_id into ``msg.header`` (any object with those fields)."""
    stamp = msg.header.stamp
    stamp.sec, stamp.nanosec = header.stamp.sec, header.stamp.nanosec
    msg.header.frame_id = header.frame_id


class OutputImage:
    """An Image message whose ``data`` is reused across frames of the same size.

    ``prepare`` returns a writable numpy view over the message's own byte storage, so the
    post-processing writes pixels straight into the message (no per-frame allocation).
    """

    def __init__(self, encoding: str, channels: int, dtype: type) -> None:
        """Describe the pixel format, e.g. ('mono8', 1, np.uint8) or ('32FC1', 1, float32)."""
        self.msg = Image()
        self.msg.encoding = encoding
        self.msg.is_bigendian = is_bigendian_flag(dtype)
        self.channels = channels
        self.dtype = np.dtype(dtype)
        self._shape: tuple[int, int] | None = None
        self._view = np.empty(0, self.dtype)

    def prepare(self, header: object, height: int, width: int) -> np.ndarray:
        """Copy the header (stamp, frame_id) and set the size; return the (H, W[, C]) view.

        ``header`` is a std_msgs Header or anything with ``stamp.sec``, ``stamp.nanosec``
        and ``frame_id`` (a header read from CDR). Fill the view, then publish ``msg``.
        """
        if self._shape != (height, width):
            row_bytes = width * self.channels * self.dtype.itemsize
            self.msg.height, self.msg.width, self.msg.step = height, width, row_bytes
            self.msg.data = array.array('B', bytes(row_bytes * height))
            shape = (height, width) if self.channels == 1 else (height, width, self.channels)
            # The setter may copy its argument: view the storage the message now holds.
            self._view = np.frombuffer(self.msg.data, self.dtype).reshape(shape)
            self._shape = (height, width)
        copy_header(self.msg, header)
        return self._view
