"""Segmenter: inference-size resizing, nearest-neighbour labels, bounded buffer reuse."""

import re

import numpy as np
import pytest

from seg_node.core.errors import ConfigError
from seg_node.core.inference.base import SegResult
from seg_node.core.pipeline import check_inference_size, Segmenter


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


def test_buffers_of_earlier_frame_sizes_are_bounded_in_bytes():
    segmenter = Segmenter(StripesBackend(), (30, 40), buffer_bytes=2_000_000)
    current = 0
    for side in range(100, 400, 7):  # 43 frame sizes, each (side, side)
        result = segmenter.segment(np.zeros((side, side, 3), np.uint8), probabilities=True)
        current = result.labels.nbytes + result.confidence.nbytes + result.probabilities.nbytes
        assert segmenter.buffered_bytes <= max(2_000_000, current)
    # the largest frame's own buffers (11 + 1 float32 planes and labels) exceed the budget
    assert segmenter.buffered_bytes == current == 394 * 394 * (12 * 4 + 1)
    again = segmenter.segment(np.zeros((394, 394, 3), np.uint8), probabilities=True)
    assert np.shares_memory(again.probabilities, result.probabilities)
    small = segmenter.segment(np.zeros((100, 100, 3), np.uint8)).labels
    segmenter.segment(np.zeros((101, 100, 3), np.uint8))
    assert np.shares_memory(small, segmenter.segment(np.zeros((100, 100, 3), np.uint8)).labels)


@pytest.mark.parametrize('size, words', [
    ((8, 8), 'at least 16 each'),
    ((360,), 'at least 16 each'),
    ((100000, 100000), 'is 10000000000 pixels; accepted: at most 8294400 (3840x2160)'),
    ((2161, 3840), 'is 8298240 pixels'),
])
def test_inference_size_is_capped(size, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        check_inference_size(size)


def test_inference_size_up_to_4k_is_accepted():
    check_inference_size((2160, 3840))
    check_inference_size((16, 518400))
