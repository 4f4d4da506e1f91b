"""Score models on labelled frames: the loop behind training's val, `evaluate` and `compare`."""

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from seg_node.core.inference.base import SegResult
from seg_node.evaluation.metrics import block_bootstrap_iou, ConfusionMatrix, Scores


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
                    num_classes: int, frame_matrices: list[np.ndarray] | None = None
                    ) -> tuple[ConfusionMatrix, list[float]]:
    """Segment every (image, label) pair and accumulate a confusion matrix.

    Args:
        segment: ``Backend.infer`` or ``Segmenter.segment`` (the node's path, which resizes
            to its inference size and back); called as ``segment(image, confidence=False)``.
        frames: pairs of (H, W, 3) uint8 RGB image and (H, W) uint8 ground-truth ids.
        num_classes: K; ground-truth ids >= K (void) are not scored.
        frame_matrices: if given, each frame's own (K, K) int64 confusion matrix is appended
            to it, in frame order (for per-frame analysis and bootstrap intervals).

    Returns:
        The confusion matrix and each frame's segmentation time in seconds.

    """
    matrix = ConfusionMatrix(num_classes)
    latencies = []
    for image, label in frames:
        start = time.perf_counter()
        result = segment(image, confidence=False)
        latencies.append(time.perf_counter() - start)
        frame = ConfusionMatrix(num_classes)
        frame.update(label, result.labels)
        matrix.merge(frame)
        if frame_matrices is not None:
            frame_matrices.append(frame.matrix)
    return matrix, latencies


@dataclass(frozen=True)
class Comparison:
    """Models scored on the same frames, with paired block-bootstrap resamples.

    Attributes:
        scores: each model's scores on all frames.
        resampled_iou: (M, S, K) float64 per-class IoU of each model on each resample.

    """

    scores: list[Scores]
    resampled_iou: np.ndarray

    def differences(self) -> np.ndarray:
        """Return (M, S, K + 1) IoU of each model minus model 0 per resample; last column mIoU."""
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)  # a class absent from a resample
            per_model = np.concatenate(
                [self.resampled_iou, np.nanmean(self.resampled_iou, axis=2, keepdims=True)],
                axis=2)
        return per_model - per_model[0]


def compare_models(segments: list[Callable[..., SegResult]], images: Sequence[np.ndarray],
                   labels: Sequence[np.ndarray], num_classes: int, block: int, samples: int,
                   seed: int = 0) -> Comparison:
    """Score several models on the same frames and resample the frames in blocks.

    Args:
        segments: each model's ``infer``/``segment`` (see :func:`evaluate_frames`).
        images: (H, W, 3) uint8 RGB frames in time order.
        labels: (H, W) uint8 ground-truth ids, one per image.
        num_classes: K.
        block: consecutive frames per bootstrap block (see
            :func:`seg_node.evaluation.metrics.block_bootstrap_iou`).
        samples: bootstrap resamples.
        seed: bootstrap seed.

    """
    scores, per_model = [], []
    for segment in segments:
        frame_matrices: list[np.ndarray] = []
        matrix, _ = evaluate_frames(segment, zip(images, labels, strict=True), num_classes,
                                    frame_matrices)
        scores.append(matrix.scores())
        per_model.append(frame_matrices)
    return Comparison(scores, block_bootstrap_iou(np.array(per_model), block, samples, seed))


def comparison_to_dict(comparison: Comparison, model_names: list[str],
                       class_names: Sequence[str], interval: float = 0.9) -> dict:
    """Return each later model's IoU difference to the first, per class and for mIoU.

    Args:
        comparison: the result of :func:`compare_models`.
        model_names: one name per model; the first is the baseline.
        class_names: K class names.
        interval: central probability of the reported bootstrap interval.

    Returns:
        ``{name: {class or "mIoU": {"baseline", "iou", "difference", "low", "high",
        "share_better"}}}`` for every model but the first: ``difference`` is on all frames,
        ``low``/``high`` bound the central ``interval`` of the resampled differences and
        ``share_better`` is the share of resamples in which the model beats the baseline.

    """
    tail = (1.0 - interval) / 2.0
    keys = [*class_names, 'mIoU']
    totals = [np.append(scores.iou, scores.miou) for scores in comparison.scores]
    report = {}
    all_differences = comparison.differences()
    for model in range(1, len(model_names)):
        differences = all_differences[model]
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)  # a class absent from resamples
            low, high = np.nanquantile(differences, [tail, 1.0 - tail], axis=0)
        better = (differences > 0).mean(axis=0)
        report[model_names[model]] = {
            key: {'baseline': _rounded(totals[0][k]), 'iou': _rounded(totals[model][k]),
                  'difference': _rounded(totals[model][k] - totals[0][k]),
                  'low': _rounded(low[k]), 'high': _rounded(high[k]),
                  'share_better': _rounded(better[k])}
            for k, key in enumerate(keys)}
    return report


def format_comparison(report: dict, baseline: str, interval: float = 0.9) -> str:
    """Render :func:`comparison_to_dict`'s report as one plain-text table per model."""
    lines = []
    for name, rows in report.items():
        width = max(len(key) for key in rows)
        lines.append(f'{name} against {baseline} (block bootstrap, '
                     f'{interval:.0%} interval of the difference):')
        lines.append(f'{"class":<{width}}  {"base":>6}  {"model":>6}  {"diff":>7}  '
                     f'{"interval":>17}  {"better":>6}')
        for key, row in rows.items():
            base, iou, difference, low, high, better = (
                float('nan') if row[field] is None else row[field]
                for field in ('baseline', 'iou', 'difference', 'low', 'high', 'share_better'))
            lines.append(f'{key:<{width}}  {base:6.3f}  {iou:6.3f}  {difference:+7.3f}  '
                         f'[{low:+7.3f}, {high:+7.3f}]  {better:6.2f}')
    return '\n'.join(lines)


def _rounded(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None
