"""Segmenter: inference-size resizing, nearest-neighbour labels, buffer reuse."""

import numpy as np

from seg_node.core.inference.base import SegResult
from seg_node.core.pipeline import Segmenter


class StripesBackend:
    """A backend whose labels are column stripes: label = column // 4 (mod 11)."""

    name = 'stripes'

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def infer(self, image, confidence=True, probabilities=False):
        height, width = image.shape[:2]
        self.seen.append((height, width))
        labels = np.broadcast_to((np.arange(width) // 4 % 11).astype(np.uint8),
                                 (height, width)).copy()
        probs = np.zeros((11, height, width), np.float32)
        np.put_along_axis(probs, labels[None].astype(np.int64), 1.0, axis=0)
        return SegResult(labels, np.full((height, width), 0.5, np.float32) if confidence
                         else None, probs if probabilities else None)


def test_frames_are_resized_to_inference_size_and_labels_back_without_blending():
    backend = StripesBackend()
    segmenter = Segmenter(backend, (30, 40))
    result = segmenter.segment(np.zeros((120, 160, 3), np.uint8), probabilities=True)
    assert backend.seen == [(30, 40)]
    assert result.labels.shape == (120, 160) and result.labels.dtype == np.uint8
    # every output column maps to the nearest inference column: 4x upscaling of stripes
    expected_row = (np.arange(160) // 4 // 4 % 11).astype(np.uint8)
    np.testing.assert_array_equal(result.labels, np.broadcast_to(expected_row, (120, 160)))
    assert set(np.unique(result.labels)) <= set(range(11))
    np.testing.assert_allclose(result.confidence, 0.5)
    assert result.probabilities.shape == (11, 120, 160)
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-6)


def test_same_size_frames_pass_straight_through_and_buffers_are_reused():
    backend = StripesBackend()
    segmenter = Segmenter(backend, (30, 40))
    first = segmenter.segment(np.zeros((30, 40, 3), np.uint8))
    assert backend.seen == [(30, 40)] and first.labels.shape == (30, 40)
    big = segmenter.segment(np.zeros((60, 80, 3), np.uint8)).labels
    again = segmenter.segment(np.zeros((60, 80, 3), np.uint8)).labels
    assert np.shares_memory(big, again)
    assert Segmenter(backend, None).segment(np.zeros((8, 12, 3), np.uint8)).labels.shape == (
        8, 12)
