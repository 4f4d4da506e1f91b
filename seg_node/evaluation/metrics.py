"""Confusion matrix and the IoU family of segmentation metrics.

One implementation shared by training (val mIoU), ``seg_tool evaluate`` and ``eval-bag``.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    """Metrics derived from a confusion matrix.

    Attributes:
        iou: (K,) float64 per-class IoU; NaN for a class absent from both truth and prediction.
        miou: mean of the finite entries of ``iou``.
        pixel_accuracy: correctly labelled / all scored pixels.
        class_accuracy: (K,) float64 per-class recall; NaN where the class never occurs.
        mean_class_accuracy: mean of the finite entries of ``class_accuracy``.
        precision: (K,) float64 per-class precision; NaN where the class is never predicted.
        matrix: (K, K) int64 pixel counts, rows ground truth, columns prediction.

    """

    iou: np.ndarray
    miou: float
    pixel_accuracy: float
    class_accuracy: np.ndarray
    mean_class_accuracy: float
    precision: np.ndarray
    matrix: np.ndarray


def class_iou(matrices: np.ndarray) -> np.ndarray:
    """Return per-class IoU of one or more confusion matrices.

    Args:
        matrices: (..., K, K) pixel counts, rows ground truth, columns prediction.

    Returns:
        (..., K) float64 IoU; NaN for a class absent from both truth and prediction.

    """
    matrices = np.asarray(matrices, np.float64)
    true_positive = np.diagonal(matrices, axis1=-2, axis2=-1)
    union = matrices.sum(axis=-1) + matrices.sum(axis=-2) - true_positive
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union > 0, true_positive / union, np.nan)


def block_bootstrap_iou(frame_matrices: np.ndarray, block: int, samples: int,
                        seed: int = 0) -> np.ndarray:
    """Per-class IoU of models over moving-block bootstrap resamples of the same frames.

    Frames close in time show the same objects (a car waiting at a light sees one pole in
    many frames), so frames are resampled in runs of ``block`` consecutive ones: each
    resample joins blocks starting at random frames until it has as many frames as the
    original. Every model is scored on the same resamples, so differences between models
    are paired.

    Args:
        frame_matrices: (M, F, K, K) per-frame confusion matrices of M models on the same F
            frames, in time order.
        block: frames per block, 1..F.
        samples: number of resamples S.
        seed: random seed.

    Returns:
        (M, S, K) float64 IoU; NaN where a class is absent from a resample.

    Raises:
        ValueError: ``block`` outside 1..F.

    """
    frame_matrices = np.asarray(frame_matrices, np.int64)
    frames = frame_matrices.shape[1]
    if not 1 <= block <= frames:
        raise ValueError(f'bootstrap block of {block} frames needs to be in 1..{frames}')
    cumulative = np.concatenate([np.zeros_like(frame_matrices[:, :1]),
                                 np.cumsum(frame_matrices, axis=1)], axis=1)
    blocks = -(-frames // block)
    starts = np.random.default_rng(seed).integers(0, frames - block + 1, (samples, blocks))
    # whole blocks, then the last one cut short so every resample has exactly F frames
    ends = np.minimum(starts + block, starts + frames - block * np.arange(blocks))
    totals = (cumulative[:, ends] - cumulative[:, starts]).sum(axis=2)
    return class_iou(totals)


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float('nan')


class ConfusionMatrix:
    """Accumulates a (K, K) confusion matrix; rows are ground truth, columns predictions.

    Pixels whose ground truth is the ignore id (or any id >= K) are not counted.
    """

    def __init__(self, num_classes: int) -> None:
        """Create an empty matrix for ``num_classes`` real classes."""
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        """Add one or more frames.

        Args:
            truth: integer class ids of any shape; ids outside 0..K-1 are ignored.
            prediction: predicted class ids, same shape as ``truth``.

        """
        if truth.shape != prediction.shape:
            raise ValueError(f'truth {truth.shape} and prediction {prediction.shape} differ')
        truth = truth.ravel().astype(np.int64, copy=False)
        prediction = prediction.ravel().astype(np.int64, copy=False)
        keep = (truth >= 0) & (truth < self.num_classes)
        index = truth[keep] * self.num_classes + prediction[keep]
        counts = np.bincount(index, minlength=self.num_classes ** 2)
        self.matrix += counts[: self.num_classes ** 2].reshape(self.num_classes, -1)

    def merge(self, other: 'ConfusionMatrix') -> None:
        """Add another matrix of the same size into this one."""
        self.matrix += other.matrix

    def scores(self) -> Scores:
        """Compute IoU, mIoU and accuracies from the counts so far."""
        matrix = self.matrix.astype(np.float64)
        true_positive = np.diag(matrix)
        truth_total = matrix.sum(axis=1)
        predicted_total = matrix.sum(axis=0)
        iou = class_iou(matrix)
        with np.errstate(invalid='ignore', divide='ignore'):
            class_accuracy = np.where(truth_total > 0, true_positive / truth_total, np.nan)
            precision = np.where(predicted_total > 0, true_positive / predicted_total, np.nan)
        total = matrix.sum()
        pixel_accuracy = float(true_positive.sum() / total) if total else float('nan')
        return Scores(iou, _nanmean(iou), pixel_accuracy, class_accuracy,
                      _nanmean(class_accuracy), precision, self.matrix.copy())


def format_table(scores: Scores, class_names: tuple[str, ...] | list[str]) -> str:
    """Render per-class IoU, recall, precision and the summary metrics as a plain-text table."""
    width = max(len(name) for name in (*class_names, 'class accuracy'))
    lines = [f'{"class":<{width}}  {"IoU":>6}  {"recall":>6}  {"prec":>6}']
    rows = zip(class_names, scores.iou, scores.class_accuracy, scores.precision, strict=True)
    for name, iou, recall, precision in rows:
        lines.append(f'{name:<{width}}  {iou:6.3f}  {recall:6.3f}  {precision:6.3f}')
    lines.append(f'{"mIoU":<{width}}  {scores.miou:6.3f}')
    lines.append(f'{"pixel accuracy":<{width}}  {scores.pixel_accuracy:6.3f}')
    lines.append(f'{"class accuracy":<{width}}  {scores.mean_class_accuracy:6.3f}')
    return '\n'.join(lines)


def scores_to_dict(scores: Scores, class_names: tuple[str, ...] | list[str]) -> dict:
    """Return the metrics as JSON-ready values (NaN becomes None).

    ``confusion_matrix`` holds pixel counts, one row per ground-truth class in
    ``class_names`` order, one column per predicted class.
    """
    def clean(value: float) -> float | None:
        return None if not np.isfinite(value) else round(float(value), 6)

    def per_class(values: np.ndarray) -> dict[str, float | None]:
        return {name: clean(value) for name, value in zip(class_names, values, strict=True)}

    return {
        'miou': clean(scores.miou),
        'per_class_iou': per_class(scores.iou),
        'pixel_accuracy': clean(scores.pixel_accuracy),
        'mean_class_accuracy': clean(scores.mean_class_accuracy),
        'per_class_recall': per_class(scores.class_accuracy),
        'per_class_precision': per_class(scores.precision),
        'confusion_matrix': scores.matrix.tolist(),
    }
