"""CamVid-format labelled data: split files of ``image label`` pairs, loaded into memory once."""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from seg_node.core.classes import ClassList
from seg_node.core.errors import ConfigError


@dataclass
class LabelledImages:
    """A split held in memory.

    Attributes:
        names: frame file names, in split-file order.
        images: list of (H, W, 3) uint8 RGB images.
        labels: list of (H, W) uint8 class ids (the class file's ignore id for void).

    """

    names: list[str]
    images: list[np.ndarray]
    labels: list[np.ndarray]


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f'cannot read image {path}: missing or not an image')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path: Path) -> np.ndarray:
    """Read a single-channel label PNG as (H, W) uint8 class ids."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2:
        raise ConfigError(f'cannot read label {path}: expected a single-channel PNG')
    return label


def split_pairs(source: Path, split: str = 'val') -> list[tuple[Path, Path]]:
    """Resolve ``(image, label)`` paths of a split.

    Args:
        source: a split file (``image label`` per line, relative to its folder), or a
            CamVid-format root holding ``<split>.txt`` (or ``<split>/`` and ``<split>annot/``).
        split: split name used when ``source`` is a folder.

    """
    if source.is_dir():
        split_file = source / f'{split}.txt'
        if not split_file.exists():
            images = sorted((source / split).glob('*.png'))
            pairs = [(path, source / f'{split}annot' / path.name) for path in images]
            if not pairs:
                raise ConfigError(f'{source} has neither {split}.txt nor {split}/*.png')
            return pairs
        source = split_file
    if not source.exists():
        raise ConfigError(f'split file {source} does not exist')
    pairs = []
    for line in source.read_text().splitlines():
        if line.strip():
            image, label = line.split()[:2]
            pairs.append((source.parent / image, source.parent / label))
    return pairs


def rescale(image: np.ndarray, label: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize an (H, W, 3) image (area) and its (H, W) label (nearest) by ``scale``."""
    size = (round(label.shape[1] * scale), round(label.shape[0] * scale))
    return (cv2.resize(image, size, interpolation=cv2.INTER_AREA),
            cv2.resize(label, size, interpolation=cv2.INTER_NEAREST_EXACT))


def load_split(source: Path, split: str = 'val', limit: int | None = None,
               scale: float = 1.0) -> LabelledImages:
    """Load a split's images and labels into memory (see :func:`split_pairs`).

    Args:
        source: split file or CamVid-format folder.
        split: split name for a folder.
        limit: keep only the first ``limit`` pairs.
        scale: resize every pair by this factor (e.g. 0.5 for cheaper ablations).
    """
    pairs = split_pairs(Path(source), split)[:limit]
    images = [read_rgb(image) for image, _ in pairs]
    labels = [read_label(label) for _, label in pairs]
    if scale != 1.0:
        images, labels = map(list, zip(*(rescale(image, label, scale)
                                         for image, label in zip(images, labels, strict=True)),
                                       strict=True))
    return LabelledImages([image.name for image, _ in pairs], images, labels)


def class_frequencies(labels: list[np.ndarray], classes: ClassList) -> np.ndarray:
    """Return (K,) float64 pixel frequency of each class among non-void pixels."""
    counts = np.zeros(classes.num_classes, np.int64)
    for label in labels:
        counts += np.bincount(label.ravel(), minlength=256)[: classes.num_classes]
    return counts / max(counts.sum(), 1)


CLASS_WEIGHTINGS = ('median-frequency', 'sqrt-median-frequency', 'none')


def class_weights(labels: list[np.ndarray], classes: ClassList,
                  weighting: str = 'median-frequency') -> np.ndarray:
    """Return (K,) float32 loss weights balancing class frequencies.

    Args:
        labels: (H, W) uint8 label images of the training set.
        classes: the class list (ids >= K are not counted).
        weighting: 'median-frequency' (median / frequency: Eigen & Fergus, SegNet),
            'sqrt-median-frequency' (its square root: rare classes favoured less, fewer
            false positives on them) or 'none' (all 1).

    A class absent from the labels gets weight 0.
    """
    if weighting not in CLASS_WEIGHTINGS:
        raise ConfigError(f'unknown class weighting {weighting!r}; choose one of '
                          + ', '.join(CLASS_WEIGHTINGS))
    frequency = class_frequencies(labels, classes)
    present = frequency > 0
    weights = np.zeros_like(frequency)
    weights[present] = np.median(frequency[present]) / frequency[present]
    if weighting == 'sqrt-median-frequency':
        weights = np.sqrt(weights)
    elif weighting == 'none':
        weights = present.astype(np.float64)
    return weights.astype(np.float32)


def channel_statistics(images: list[np.ndarray]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return per-channel RGB mean and std in 0..1 units over a list of uint8 images."""
    pixels = np.concatenate([image.reshape(-1, 3)[::7] for image in images]).astype(np.float64)
    mean = tuple(round(float(v), 4) for v in pixels.mean(axis=0) / 255.0)
    std = tuple(round(float(v), 4) for v in pixels.std(axis=0) / 255.0)
    return mean, std
