"""From an RGB frame to outputs at the camera's size: the one path the node and eval-bag share.

The frame is resized to the inference size (if it differs), the backend runs once, and the
outputs are resized back: labels with exact nearest-neighbour (class ids are never blended),
confidences bilinearly. Resize buffers are allocated once per frame size; those of earlier
frame sizes are kept only while they fit a byte budget.
"""

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from seg_node.core.classes import ClassList, classes_beside, load_classes
from seg_node.core.errors import ConfigError
from seg_node.core.inference.base import Backend, create_backend, SegResult

# Largest inference size accepted: one 4K UHD frame. The bundled model needs ~1.2 GB there
# (ONNX Runtime, measured), and the network's cost grows with the pixel count.
MAX_INFERENCE_PIXELS = 3840 * 2160
# Bytes of resize buffers kept for frame sizes other than the current one.
DEFAULT_BUFFER_BYTES = 128 * 2**20


class Segmenter:
    """Runs a backend on frames of any size at a fixed inference size."""

    def __init__(self, backend: Backend, inference_size: tuple[int, int] | None,
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES) -> None:
        """Create the pipeline.

        Args:
            backend: the inference backend.
            inference_size: (H, W) the network sees; None runs frames at their own size.
            buffer_bytes: resize buffers of frame sizes other than the current one are
                dropped, least recently used first, once all buffers take more bytes.

        """
        self.backend = backend
        self.inference_size = inference_size
        self.buffer_bytes = buffer_bytes
        self._input: np.ndarray | None = None  # (*inference_size, 3) uint8
        # frame (H, W) -> output name -> array at that size; least recently used first
        self._buffers: OrderedDict[tuple[int, int], dict[str, np.ndarray]] = OrderedDict()

    @property
    def buffered_bytes(self) -> int:
        """Bytes held by the resize buffers of all kept frame sizes."""
        return sum(array.nbytes for group in self._buffers.values() for array in group.values())

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """Return the reusable ``name`` output array for a frame of (H, W) = shape[-2:]."""
        size = shape[-2:]
        group = self._buffers.get(size)
        if group is None:
            group = self._buffers[size] = {}
        else:
            self._buffers.move_to_end(size)
        array = group.get(name)
        if array is None or array.shape != shape:
            array = group[name] = np.empty(shape, dtype)
            while len(self._buffers) > 1 and self.buffered_bytes > self.buffer_bytes:
                self._buffers.popitem(last=False)
        return array

    def segment(self, rgb: np.ndarray, confidence: bool = True,
                probabilities: bool = False) -> SegResult:
        """Segment one frame.

        Args:
            rgb: (H, W, 3) uint8 RGB camera frame.
            confidence: also return the (H, W) float32 max-probability map.
            probabilities: also return the (K, H, W) float32 class probabilities.

        Returns:
            Outputs at the frame's (H, W); the arrays are reused by the next call.

        """
        height, width = rgb.shape[:2]
        size = self.inference_size
        if size is None or size == (height, width):
            return self.backend.infer(np.ascontiguousarray(rgb), confidence, probabilities)
        if self._input is None:
            self._input = np.empty((*size, 3), np.uint8)
        small = cv2.resize(rgb, (size[1], size[0]), dst=self._input,
                           interpolation=cv2.INTER_AREA)
        result = self.backend.infer(small, confidence, probabilities)
        full = (width, height)
        labels = cv2.resize(result.labels, full,
                            dst=self._buffer('labels', (height, width), np.uint8),
                            interpolation=cv2.INTER_NEAREST_EXACT)
        max_probability = class_probability = None
        if confidence:
            max_probability = cv2.resize(
                result.confidence, full,
                dst=self._buffer('confidence', (height, width), np.float32),
                interpolation=cv2.INTER_LINEAR)
        if probabilities:
            class_probability = self._buffer(
                'probabilities', (result.probabilities.shape[0], height, width), np.float32)
            for channel, plane in zip(class_probability, result.probabilities, strict=True):
                cv2.resize(plane, full, dst=channel, interpolation=cv2.INTER_LINEAR)
        return SegResult(labels, max_probability, class_probability)


def check_inference_size(inference_size: tuple[int, ...] | None) -> None:
    """Refuse an inference size that is not (height, width) of 16 to MAX_INFERENCE_PIXELS.

    Raises:
        ConfigError: naming the size and what is accepted.

    """
    if inference_size is None:
        return
    if len(inference_size) != 2 or min(inference_size) < 16:
        raise ConfigError(f'inference size {list(inference_size)} is invalid; give height and '
                          'width of at least 16 each')
    height, width = inference_size
    if height * width > MAX_INFERENCE_PIXELS:
        raise ConfigError(f'inference size {list(inference_size)} is {height * width} pixels; '
                          f'accepted: at most {MAX_INFERENCE_PIXELS} (3840x2160)')


def load_segmenter(model: Path, classes_path: Path | None = None, backend: str = 'auto',
                   threads: int = 0, inference_size: tuple[int, int] | None = None,
                   tensorrt_options: dict[str, object] | None = None,
                   log: Callable[[str], None] | None = None) -> tuple[Segmenter, ClassList]:
    """Load a model and its class file: the one set-up shared by the node and eval-bag.

    Args:
        model: ONNX model of the seg_node contract.
        classes_path: class YAML; None: classes.yaml next to the model, else the bundled one.
        backend: 'auto' or a backend name (see create_backend).
        threads: CPU inference threads; 0 lets the backend decide.
        inference_size: (H, W) the network sees; None: the model's training size.
        tensorrt_options: options of the TensorRT backend (precision, ...).
        log: receives backend progress and fallback lines.

    Raises:
        ConfigError: the class file does not fit the model, or a bad inference size.
        ModelLoadError: the model or class file cannot be loaded.
    """
    classes_path = classes_path or classes_beside(model)
    classes = load_classes(classes_path)
    check_inference_size(inference_size)
    network = create_backend(backend, model, threads, {'tensorrt': tensorrt_options or {}}, log)
    if network.info.num_classes != classes.num_classes:
        raise ConfigError(f'model {model} has {network.info.num_classes} classes but the class '
                          f'file {classes_path} lists {classes.num_classes}; pass the '
                          'matching class file')
    return Segmenter(network, inference_size or network.info.inference_size), classes
