"""The inference interface every backend implements, and the factory that picks one."""

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from seg_node.core.errors import ConfigError, ModelLoadError

LABELS = 'labels'
CONFIDENCE = 'confidence'
PROBABILITIES = 'probabilities'


@dataclass
class SegResult:
    """One frame's network outputs at the size of the image given to the backend.

    Attributes:
        labels: (H, W) uint8 class ids.
        confidence: (H, W) float32 probability of the chosen class, or None if not asked for.
        probabilities: (K, H, W) float32 class probabilities, or None if not asked for.

    """

    labels: np.ndarray
    confidence: np.ndarray | None = None
    probabilities: np.ndarray | None = None


class OneFrameThroughBatch:
    """Backend mixin: ``infer`` runs one frame as a batch of one through ``infer_batch``."""

    def infer(self, image: np.ndarray, confidence: bool = True,
              probabilities: bool = False) -> SegResult:
        """Segment one (H, W, 3) uint8 RGB frame; see :class:`Backend`."""
        batch = self.infer_batch(np.ascontiguousarray(image)[None], confidence, probabilities)
        return SegResult(batch.labels[0],
                         None if batch.confidence is None else batch.confidence[0],
                         None if batch.probabilities is None else batch.probabilities[0])


class Backend(Protocol):
    """Runs the exported segmentation graph on RGB frames.

    ``max_batch`` is the most frames one ``infer_batch`` call takes.
    """

    name: str
    model_path: Path
    max_batch: int

    def infer_batch(self, images: np.ndarray, confidence: bool = True,
                    probabilities: bool = False) -> SegResult:
        """Segment a batch of same-sized frames in one call.

        Args:
            images: (N, H, W, 3) uint8 RGB, C-contiguous, N <= ``max_batch``.
            confidence: also return the max-probability maps.
            probabilities: also return the per-class probability maps.

        Returns:
            (N, H, W) labels and confidence, (N, K, H, W) probabilities; reused by the next
            call.

        """

    def infer(self, image: np.ndarray, confidence: bool = True,
              probabilities: bool = False) -> SegResult:
        """Segment one frame.

        Args:
            image: (H, W, 3) uint8 RGB, C-contiguous.
            confidence: also return the max-probability map.
            probabilities: also return the per-class probability maps.

        Returns:
            The outputs asked for; arrays may be reused by the next call, so copy them to
            keep them longer.

        """


def label_agreement(reference: Backend, candidate: Backend,
                    images: list[np.ndarray]) -> tuple[float, int]:
    """Compare two backends' labels on the same frames.

    Args:
        reference: the backend taken as right (e.g. ONNX Runtime, or PyTorch at export).
        candidate: the backend checked against it.
        images: (H, W, 3) uint8 RGB frames.

    Returns:
        The fraction of pixels with equal labels (1.0 for no frames) and the number of frames
        whose labels are equal on every pixel.
    """
    same = total = identical = 0
    for image in images:
        expected = reference.infer(image, confidence=False).labels.copy()
        equal = int((candidate.infer(image, confidence=False).labels == expected).sum())
        same, total = same + equal, total + expected.size
        identical += equal == expected.size
    return (same / total if total else 1.0), identical


# name -> (module, class): modules are imported on use, so `tensorrt` and `torch` are never
# loaded unless chosen.
BACKENDS: dict[str, tuple[str, str]] = {
    'onnxruntime': ('seg_node.core.inference.onnxruntime', 'OnnxRuntimeBackend'),
    'tensorrt': ('seg_node.core.inference.tensorrt', 'TensorRTBackend'),
    'torch': ('seg_node.models.torch_backend', 'TorchBackend'),
}
# What the node and eval-bag offer: torch is a development backend only.
DEPLOY_BACKENDS = ('auto', 'onnxruntime', 'tensorrt')


def _backend_class(name: str) -> type:
    module_name, class_name = BACKENDS[name]
    return getattr(importlib.import_module(module_name), class_name)


def backend_available(name: str) -> bool:
    """Return whether backend ``name`` can run here (its libraries and device exist)."""
    try:
        return bool(_backend_class(name).available())
    except ImportError:
        return False


def create_backend(name: str, model_path: str | Path, num_threads: int = 0,
                   options: Mapping[str, Mapping[str, object]] | None = None,
                   log: Callable[[str], None] | None = None) -> Backend:
    """Create the backend ``name``.

    ``auto`` uses TensorRT when it is installed and a GPU is present and its engine can be
    loaded (or built, with ``build_engine_if_missing``); otherwise ONNX Runtime, saying why
    through ``log``.

    Args:
        name: one of :data:`DEPLOY_BACKENDS` or a key of :data:`BACKENDS`.
        model_path: ONNX model (or a torch checkpoint for ``torch``).
        num_threads: CPU threads for CPU backends; 0 lets the backend decide.
        options: per backend name, extra keyword options of that backend's class, e.g.
            ``{'tensorrt': {'precision': 'fp16'}, 'onnxruntime': {'allow_spinning': False}}``;
            ``auto`` hands each backend it tries its own entry.
        log: receives progress and fallback lines.

    Raises:
        ConfigError: unknown backend name, or an option its backend does not take.
        ModelLoadError: the model cannot be loaded by that backend.
    """
    if name == 'auto':
        if backend_available('tensorrt'):
            try:
                return create_backend('tensorrt', model_path, num_threads, options, log)
            except ModelLoadError as err:
                if log is not None:
                    log(f'backend auto: TensorRT not used ({err}); using onnxruntime')
        return create_backend('onnxruntime', model_path, num_threads, options, log)
    if name not in BACKENDS:
        raise ConfigError(f'unknown backend {name!r}; valid choices: auto, '
                          + ', '.join(BACKENDS))
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelLoadError(f'model file {model_path} does not exist; pass an exported '
                             'ONNX model with the `model` parameter')
    keywords = dict((options or {}).get(name, {}))
    backend_class = _backend_class(name)
    valid = sorted(set(inspect.signature(backend_class).parameters)
                   - {'model_path', 'num_threads'})
    unknown = sorted(set(keywords) - set(valid))
    if unknown:
        raise ConfigError(f'backend {name} has no option {", ".join(unknown)}; valid options: '
                          + (', '.join(valid) or 'none'))
    if name == 'tensorrt' and log is not None:
        keywords.setdefault('log', log)
    return backend_class(model_path, num_threads=num_threads, **keywords)
