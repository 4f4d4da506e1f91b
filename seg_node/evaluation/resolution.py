"""How much per-class IoU a label map of coarse resolution can reach at best.

A network that decides one class per s x s cell (the naive design decides at stride 16 and
upsamples with nearest neighbour) cannot label anything thinner than the cell. This module
measures that ceiling on ground truth alone: every cell gets its most frequent scored class
(the best single label for the cell's pixel accuracy), is upsampled back with nearest
neighbour, and is scored against the full-resolution truth with the shared confusion matrix.
No network is involved, so the numbers isolate what the upsampling design itself loses.

The same cell decision applied to a trained network's full-resolution probabilities
(:func:`model_at_strides`) asks the converse: how much of what the network gets right on
thin classes would it lose if it decided per cell like the naive design.
"""

from collections.abc import Iterable

import numpy as np

from seg_node.core.inference.base import Backend
from seg_node.evaluation.metrics import ConfusionMatrix


def cell_decisions(scores: np.ndarray, stride: int) -> np.ndarray:
    """Return each s x s cell's class of highest summed score, upsampled with nearest neighbour.

    Args:
        scores: (K, H, W) float32 per-pixel class evidence: probabilities, or a one-hot map.
        stride: cell size s in pixels; partial cells at the bottom/right use the pixels they
            have.

    Returns:
        (H, W) uint8 labels, constant over each s x s cell (ties go to the lower id; cells
        with no evidence at all get K, i.e. void).

    """
    num_classes, height, width = scores.shape
    rows, cols = -(-height // stride), -(-width // stride)
    padded = np.zeros((num_classes, rows * stride, cols * stride), np.float32)
    padded[:, :height, :width] = scores
    sums = padded.reshape(num_classes, rows, stride, cols, stride).sum(axis=(2, 4))
    decided = sums.argmax(axis=0).astype(np.uint8)
    decided[sums.max(axis=0) == 0] = num_classes
    return decided.repeat(stride, axis=0).repeat(stride, axis=1)[:height, :width]


def coarse_labels(truth: np.ndarray, stride: int, num_classes: int) -> np.ndarray:
    """Return the per-cell majority class of ``truth``, upsampled back with nearest neighbour.

    Args:
        truth: (H, W) uint8 ground-truth ids; ids >= ``num_classes`` (void) are not counted.
        stride: cell size s in pixels.
        num_classes: K.

    Returns:
        (H, W) uint8 labels, constant over each s x s cell (cells without a scored pixel
        get ``num_classes``, i.e. void).

    """
    one_hot = truth[None] == np.arange(num_classes, dtype=truth.dtype)[:, None, None]
    return cell_decisions(one_hot.astype(np.float32), stride)


def resolution_ceiling(labels: Iterable[np.ndarray], stride: int,
                       num_classes: int) -> ConfusionMatrix:
    """Score the best stride-``stride`` nearest-upsampled labelling of each truth map.

    Args:
        labels: (H, W) uint8 ground-truth maps.
        stride: cell size s in pixels (1 reproduces the truth exactly).
        num_classes: K; ids >= K are void and not scored.

    """
    matrix = ConfusionMatrix(num_classes)
    for truth in labels:
        matrix.update(truth, coarse_labels(truth, stride, num_classes))
    return matrix


def model_at_strides(backend: Backend, frames: Iterable[tuple[np.ndarray, np.ndarray]],
                     strides: Iterable[int], num_classes: int) -> dict[int, ConfusionMatrix]:
    """Score a network's probabilities decided per s x s cell, for each stride s.

    Stride 1 is the network as exported (the argmax of its probabilities).

    Args:
        backend: any inference backend.
        frames: pairs of (H, W, 3) uint8 RGB image and (H, W) uint8 ground-truth ids.
        strides: cell sizes to score.
        num_classes: K; ground-truth ids >= K (void) are not scored.

    Returns:
        One confusion matrix per stride.

    """
    matrices = {stride: ConfusionMatrix(num_classes) for stride in strides}
    for image, truth in frames:
        probabilities = backend.infer(image, confidence=False, probabilities=True).probabilities
        for stride, matrix in matrices.items():
            matrix.update(truth, cell_decisions(probabilities, stride))
    return matrices


def horizontal_run_lengths(mask: np.ndarray) -> np.ndarray:
    """Return, for each set pixel, the length of the horizontal run of set pixels it is in.

    A vertical pole's run length is its width in pixels at that row.

    Args:
        mask: (H, W) bool.

    Returns:
        (H, W) int64 run lengths, 0 where ``mask`` is False.

    """
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    starts, ends = np.nonzero(edges == 1)[1], np.nonzero(edges == -1)[1]
    lengths = ends - starts
    runs = np.zeros(mask.shape, np.int64)
    runs[mask] = np.repeat(lengths, lengths)
    return runs


def recall_by_width(pairs: Iterable[tuple[np.ndarray, np.ndarray]], class_id: int,
                    max_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Count a class's truth pixels, and those predicted as it, by the width of their run.

    Args:
        pairs: (truth, prediction) pairs of (H, W) uint8 class ids.
        class_id: the class to measure (e.g. pole).
        max_width: widths above it are counted in the last bin.

    Returns:
        Two (max_width,) int64 arrays: truth pixels and recalled pixels whose horizontal run
        is 1, 2, ..., ``max_width`` or more pixels wide.

    """
    truth_pixels = np.zeros(max_width, np.int64)
    recalled = np.zeros(max_width, np.int64)
    for truth, prediction in pairs:
        mask = truth == class_id
        bins = np.minimum(horizontal_run_lengths(mask)[mask], max_width) - 1
        truth_pixels += np.bincount(bins, minlength=max_width)
        recalled += np.bincount(bins[prediction[mask] == class_id], minlength=max_width)
    return truth_pixels, recalled
