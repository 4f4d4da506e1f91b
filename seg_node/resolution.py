"""How much per-class IoU a label map of coarse resolution can reach at best.

A network that decides one class per s x s cell (the naive design decides at stride 16 and
upsamples with nearest neighbour) cannot label anything thinner than the cell. This module
measures that ceiling on ground truth alone: every cell gets its most frequent scored class
(the best single label for the cell's pixel accuracy), is upsampled back with nearest
neighbour, and is scored against the full-resolution truth with the shared confusion matrix.
No network is involved, so the numbers isolate what the upsampling design itself loses.
"""

from collections.abc import Iterable

import numpy as np

from seg_node.metrics import ConfusionMatrix


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
    height, width = truth.shape
    rows, cols = -(-height // stride), -(-width // stride)
    padded = np.full((rows * stride, cols * stride), num_classes, np.uint8)
    padded[:height, :width] = truth
    cells = padded.reshape(rows, stride, cols, stride).transpose(0, 2, 1, 3)
    cells = cells.reshape(rows, cols, stride * stride)
    counts = np.stack([(cells == k).sum(axis=-1) for k in range(num_classes)], axis=-1)
    majority = counts.argmax(axis=-1).astype(np.uint8)
    majority[counts.max(axis=-1) == 0] = num_classes
    upsampled = majority.repeat(stride, axis=0).repeat(stride, axis=1)
    return upsampled[:height, :width]


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
