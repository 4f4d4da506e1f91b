"""Training-time augmentation of (image, label) pairs.

Scale, crop, flip and colour jitter, and pasting of thin/rare objects (poles, signs, people)
from another frame, so they are seen in front of other backgrounds than the ones they were
photographed against, optionally magnified first (as if they stood closer to the camera).
"""

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges.

    Attributes:
        crop: (height, width) of the training crops.
        scale: (min, max) random rescale factor applied before cropping.
        brightness: max relative brightness change.
        contrast: max relative contrast change.
        saturation: max relative saturation change.

    """

    crop: tuple[int, int] = (288, 288)
    scale: tuple[float, float] = (0.6, 1.6)
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3


def augment(image: np.ndarray, label: np.ndarray, config: AugmentConfig,
            rng: np.random.Generator, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Return one augmented crop.

    Args:
        image: (H, W, 3) uint8 RGB.
        label: (H, W) uint8 class ids.
        config: augmentation ranges.
        rng: random generator (the only source of randomness, for reproducibility).
        ignore_index: label id written where the crop extends past the scaled image.

    Returns:
        (crop_h, crop_w, 3) uint8 image and (crop_h, crop_w) uint8 label.

    """
    scale = rng.uniform(*config.scale)
    height, width = label.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    crop_h, crop_w = config.crop
    pad_h, pad_w = max(crop_h - size[1], 0), max(crop_w - size[0], 0)
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
        label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                   value=ignore_index)
    top = rng.integers(0, label.shape[0] - crop_h + 1)
    left = rng.integers(0, label.shape[1] - crop_w + 1)
    image = image[top:top + crop_h, left:left + crop_w]
    label = label[top:top + crop_h, left:left + crop_w]
    if rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    return jitter_colour(image, config, rng), np.ascontiguousarray(label)


def jitter_colour(image: np.ndarray, config: AugmentConfig,
                  rng: np.random.Generator) -> np.ndarray:
    """Randomly change brightness, contrast and saturation of a (H, W, 3) uint8 image."""
    x = image.astype(np.float32)
    x *= 1.0 + rng.uniform(-config.brightness, config.brightness)
    mean = x.mean()
    x = (x - mean) * (1.0 + rng.uniform(-config.contrast, config.contrast)) + mean
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * (1.0 + rng.uniform(-config.saturation, config.saturation)) + grey
    return np.clip(x, 0, 255).astype(np.uint8)


def paste_objects(image: np.ndarray, label: np.ndarray, donor_image: np.ndarray,
                  donor_label: np.ndarray, class_ids: np.ndarray, shift: int,
                  flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return copies of ``image``/``label`` with a donor frame's objects of ``class_ids`` on top.

    Rows are kept (objects stay at the height the camera saw them, standing on the ground);
    columns move by ``shift``. Pixels shifted past either edge are dropped. Frames of
    different sizes share their top-left overlap.

    Args:
        image: (H, W, 3) uint8 RGB receiving the objects.
        label: (H, W) uint8 class ids of ``image``.
        donor_image: (H', W', 3) uint8 RGB the objects are cut from.
        donor_label: (H', W') uint8 class ids of ``donor_image``.
        class_ids: (M,) class ids to paste.
        shift: columns to move the objects right (negative: left).
        flip: mirror the donor left-right before shifting.

    Returns:
        (H, W, 3) uint8 image and (H, W) uint8 label.

    """
    image, label = image.copy(), label.copy()
    if flip:
        donor_image, donor_label = donor_image[:, ::-1], donor_label[:, ::-1]
    height = min(label.shape[0], donor_label.shape[0])
    width = min(label.shape[1], donor_label.shape[1])
    if abs(shift) >= width:
        return image, label
    source = slice(max(-shift, 0), width - max(shift, 0))
    target = slice(max(shift, 0), width - max(-shift, 0))
    mask = np.isin(donor_label[:height, source], class_ids)
    image[:height, target][mask] = donor_image[:height, source][mask]
    label[:height, target][mask] = donor_label[:height, source][mask]
    return image, label


def magnify(image: np.ndarray, label: np.ndarray,
            scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the frame as if every object stood ``scale`` times closer to the camera.

    For a forward-looking camera an object's size and its image distance from the principal
    point both grow as 1 / depth, so scaling about the frame centre (taken as the principal
    point) moves objects where they would appear closer: a far pole becomes a wider, taller
    pole lower in the frame (or higher, above the centre row). The frame keeps its size: the
    central 1 / scale of it fills the output.

    Args:
        image: (H, W, 3) uint8 RGB.
        label: (H, W) uint8 class ids.
        scale: magnification, >= 1.

    Returns:
        (H, W, 3) uint8 image (bilinear) and (H, W) uint8 label (nearest).

    """
    height, width = label.shape
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    matrix = np.array([[scale, 0.0, (1.0 - scale) * centre_x],
                       [0.0, scale, (1.0 - scale) * centre_y]])
    image = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    label = cv2.warpAffine(label, matrix, (width, height), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_REPLICATE)
    return image, label
