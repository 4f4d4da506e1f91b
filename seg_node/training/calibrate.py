"""Per-class logit offsets fitted for mIoU on training frames (``seg_tool calibrate-bias``).

A network trained with class-weighted losses has a per-class bias in its decisions that is
tuned for the loss, not for IoU. Adding a constant offset per class to the head's logits
moves each class's decision boundary at no run-time cost: the offsets are folded into the
head's bias, so the exported graph is unchanged in size and speed. The offsets are fitted by
coordinate ascent on mIoU over pixels sampled from the *training* split (never val), using
the full-resolution probabilities of the deploy graph.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seg_node.models.torch_backend import TorchBackend
from seg_node.evaluation.metrics import ConfusionMatrix

DEFAULT_OFFSETS = tuple(np.round(np.linspace(-3.0, 3.0, 25), 3))


@dataclass
class PixelSample:
    """Pixels sampled from labelled frames.

    Attributes:
        log_probabilities: (P, K) float32 log of the deploy graph's class probabilities.
        labels: (P,) uint8 ground-truth class ids (scored pixels only).

    """

    log_probabilities: np.ndarray
    labels: np.ndarray


def sample_pixels(backend: TorchBackend, frames: Iterable[tuple[np.ndarray, np.ndarray]],
                  num_classes: int, step: int = 4) -> PixelSample:
    """Run ``backend`` on (image, label) pairs and keep every ``step``-th pixel of each axis.

    Args:
        backend: the checkpoint's torch backend.
        frames: (H, W, 3) uint8 RGB images with (H, W) uint8 ground-truth ids.
        num_classes: K; ids >= K (void) are dropped.
        step: sampling stride in both axes.

    """
    log_probabilities, labels = [], []
    for image, label in frames:
        probabilities = backend.infer(image, confidence=False, probabilities=True).probabilities
        sampled_truth = label[::step, ::step].ravel()
        scored = sampled_truth < num_classes
        sampled = probabilities[:, ::step, ::step].reshape(num_classes, -1)[:, scored]
        log_probabilities.append(np.log(np.maximum(sampled.T, 1e-12)).astype(np.float32))
        labels.append(sampled_truth[scored])
    return PixelSample(np.concatenate(log_probabilities), np.concatenate(labels))


def miou_with_offsets(sample: PixelSample, offsets: np.ndarray) -> float:
    """Return the mIoU of ``argmax(log p + offsets)`` on the sample; ``offsets`` is (K,)."""
    matrix = ConfusionMatrix(len(offsets))
    matrix.update(sample.labels, (sample.log_probabilities + offsets).argmax(axis=1))
    return matrix.scores().miou


def fit_offsets(sample: PixelSample, candidates: tuple[float, ...] = DEFAULT_OFFSETS,
                rounds: int = 2) -> tuple[np.ndarray, float, float]:
    """Coordinate ascent on the sample's mIoU over per-class offsets.

    Args:
        sample: sampled pixels (see :func:`sample_pixels`).
        candidates: offsets tried for each class in turn.
        rounds: passes over all classes.

    Returns:
        (K,) float32 offsets, the sample mIoU without and with them.

    """
    offsets = np.zeros(sample.log_probabilities.shape[1], np.float32)
    start = best = miou_with_offsets(sample, offsets)
    for _ in range(rounds):
        for index in range(len(offsets)):
            for value in candidates:
                trial = offsets.copy()
                trial[index] = value
                score = miou_with_offsets(sample, trial)
                if score > best + 1e-6:
                    best, offsets = score, trial
    return offsets, start, best


def write_offset_checkpoint(source: Path, destination: Path, offsets: np.ndarray) -> None:
    """Copy a training checkpoint with ``offsets`` added to its head's bias.

    The offsets are also recorded in the checkpoint's ``config['class_offsets']``.
    """
    checkpoint = torch.load(source, map_location='cpu', weights_only=False)
    bias = checkpoint['model']['head.bias']
    checkpoint['model']['head.bias'] = bias + torch.from_numpy(offsets).to(bias.dtype)
    checkpoint['config'] = {**checkpoint['config'], 'class_offsets': offsets.tolist()}
    Path(destination).parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, destination)
