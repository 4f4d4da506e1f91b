"""Score a model on labelled frames: the one loop behind training's val and `evaluate`."""

import time
from collections.abc import Callable, Iterable

import numpy as np

from seg_node.inference.base import SegResult
from seg_node.metrics import ConfusionMatrix


def latency_percentiles(latencies_s: list[float]) -> dict[str, float]:
    """Return ``{"p50", "p99", "mean"}`` in milliseconds of a list of durations in seconds."""
    if not latencies_s:
        return {'p50': float('nan'), 'p99': float('nan'), 'mean': float('nan')}
    milliseconds = np.asarray(latencies_s) * 1000.0
    return {'p50': round(float(np.percentile(milliseconds, 50)), 3),
            'p99': round(float(np.percentile(milliseconds, 99)), 3),
            'mean': round(float(milliseconds.mean()), 3)}


def evaluate_frames(segment: Callable[..., SegResult],
                    frames: Iterable[tuple[np.ndarray, np.ndarray]],
                    num_classes: int) -> tuple[ConfusionMatrix, list[float]]:
    """Segment every (image, label) pair and accumulate a confusion matrix.

    Args:
        segment: ``Backend.infer`` or ``Segmenter.segment`` (the node's path, which resizes
            to its inference size and back); called as ``segment(image, confidence=False)``.
        frames: pairs of (H, W, 3) uint8 RGB image and (H, W) uint8 ground-truth ids.
        num_classes: K; ground-truth ids >= K (void) are not scored.

    Returns:
        The confusion matrix and each frame's segmentation time in seconds.

    """
    matrix = ConfusionMatrix(num_classes)
    latencies = []
    for image, label in frames:
        start = time.perf_counter()
        result = segment(image, confidence=False)
        latencies.append(time.perf_counter() - start)
        matrix.update(label, result.labels)
    return matrix, latencies
