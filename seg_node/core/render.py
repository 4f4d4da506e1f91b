"""Colour images of label maps for RViz: a palette image and a camera overlay."""

import cv2
import numpy as np

from seg_node.core.classes import ClassList


def colorize(labels: np.ndarray, lut: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Map (H, W) uint8 class ids to (H, W, 3) uint8 RGB through a (256, 3) lookup table."""
    return np.take(lut, labels, axis=0, out=out)


def overlay(rgb: np.ndarray, color: np.ndarray, alpha: float,
            out: np.ndarray | None = None) -> np.ndarray:
    """Blend (H, W, 3) uint8 ``color`` over the camera image: (1 - alpha) rgb + alpha color."""
    return cv2.addWeighted(rgb, 1.0 - alpha, color, alpha, 0.0, dst=out)


class Renderer:
    """Palette and overlay rendering with the class file's colours."""

    def __init__(self, classes: ClassList, alpha: float) -> None:
        """Prepare the lookup table; ``alpha`` in [0, 1] is the overlay's colour weight."""
        self.lut = classes.color_lut()
        self.alpha = alpha

    def colorize(self, labels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Return (H, W, 3) uint8 palette colours of (H, W) uint8 labels."""
        return colorize(labels, self.lut, out)

    def overlay(self, rgb: np.ndarray, color: np.ndarray,
                out: np.ndarray | None = None) -> np.ndarray:
        """Return the (H, W, 3) uint8 blend of the camera frame and the palette image."""
        return overlay(rgb, color, self.alpha, out)
