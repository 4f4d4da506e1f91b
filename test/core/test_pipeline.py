"""Segmenter: inference-size resizing, nearest-neighbour labels, bounded buffer reuse."""

import re

import cv2
import numpy as np
import pytest

from seg_node.core.errors import ConfigError
from seg_node.core.inference.base import SegResult
from seg_node.core.pipeline import check_inference_size, input_interpolation, Segmenter


class StripesBackend:
    """A backend whose labels are column stripes: label = column // 4 (mod 11)."""

    name = 'stripes'

    def __init__(self, max_batch: int = 8) -> None:
        self.max_batch = max_batch
        self.seen: list[tuple[int, int]] = []
        self.batches: list[int] = []

    def infer_batch(self, images, confidence=True, probabilities=False):
        count, height, width = images.shape[:3]
        self.seen += [(height, width)] * count
        self.batches.append(count)
        self.inputs = images.copy()
        labels = np.broadcast_to((np.arange(width) // 4 % 11).astype(np.uint8),
                                 (count, height, width)).copy()
        labels[:, 0, 0] = images[:, 0, 0, 0] % 11  # which frame this is
        probs = np.zeros((count, 11, height, width), np.float32)
        np.put_along_axis(probs, labels[:, None].astype(np.int64), 1.0, axis=1)
        return SegResult(labels, np.full((count, height, width), 0.5, np.float32)
                         if confidence else None, probs if probabilities else None)


def test_frames_are_resized_to_inference_size_and_labels_back_without_blending():
    backend = StripesBackend()
    segmenter = Segmenter(backend, (30, 40))
    result = segmenter.segment(np.zeros((120, 160, 3), np.uint8), probabilities=True)
    assert backend.seen == [(30, 40)]
    assert result.labels.shape == (120, 160) and result.labels.dtype == np.uint8
    # every output column maps to the nearest inference column: 4x upscaling of stripes
    expected_row = (np.arange(160) // 4 // 4 % 11).astype(np.uint8)
    np.testing.assert_array_equal(result.labels[4:], np.broadcast_to(expected_row, (116, 160)))
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


def test_a_batch_of_two_sizes_runs_in_one_call_and_writes_into_given_arrays():
    backend = StripesBackend(max_batch=2)
    segmenter = Segmenter(backend, (30, 40))
    frames = [np.full((120, 160, 3), 1, np.uint8), np.full((60, 80, 3), 2, np.uint8),
              np.full((30, 40, 3), 3, np.uint8)]
    into = SegResult(np.zeros((60, 80), np.uint8), np.zeros((60, 80), np.float32),
                     np.zeros((11, 60, 80), np.float32))
    results = segmenter.segment_batch(frames, probabilities=True, into=None)
    assert backend.batches == [2, 1] and backend.seen == [(30, 40)] * 3
    assert [r.labels.shape for r in results] == [(120, 160), (60, 80), (30, 40)]
    assert [int(r.labels[0, 0]) for r in results] == [1, 2, 3]  # each frame's own outputs
    expected_row = (np.arange(80) // 2 // 4 % 11).astype(np.uint8)
    np.testing.assert_array_equal(results[1].labels[2:], np.broadcast_to(expected_row, (58, 80)))
    assert results[0].probabilities.shape == (11, 120, 160)
    np.testing.assert_allclose(results[0].probabilities.sum(axis=0), 1.0, atol=1e-6)
    written = segmenter.segment_batch(frames[1:2], probabilities=True,
                                      into=[into])[0]
    assert written.labels is into.labels and written.probabilities is into.probabilities
    np.testing.assert_array_equal(into.labels, results[1].labels)
    np.testing.assert_allclose(into.confidence, 0.5)
    assert set(segmenter.times.per_frame_ms()) == {'receive', 'resize', 'backend',
                                                   'resize_back', 'publish'}
    assert segmenter.times.per_frame_ms()['backend'] > 0


def test_frames_run_at_their_own_size_go_in_one_call_per_size():
    backend = StripesBackend()
    frames = [np.zeros((8, 12, 3), np.uint8), np.zeros((16, 12, 3), np.uint8),
              np.zeros((8, 12, 3), np.uint8)]
    results = Segmenter(backend, None).segment_batch(frames, confidence=False)
    assert backend.batches == [2, 1] and backend.seen == [(8, 12), (8, 12), (16, 12)]
    assert [r.labels.shape for r in results] == [(8, 12), (16, 12), (8, 12)]
    assert results[0].confidence is None


def test_frames_shrink_bilinearly_down_to_half_and_anti_aliased_below():
    assert input_interpolation((480, 640), (360, 480)) == cv2.INTER_LINEAR
    assert input_interpolation((180, 240), (360, 480)) == cv2.INTER_LINEAR
    assert input_interpolation((720, 960), (360, 480)) == cv2.INTER_LINEAR
    assert input_interpolation((1080, 1920), (360, 480)) == cv2.INTER_AREA
    assert input_interpolation((800, 480), (360, 480)) == cv2.INTER_AREA
    backend = StripesBackend()
    frame = np.random.default_rng(1).integers(0, 256, (48, 64, 3), np.uint8)
    Segmenter(backend, (36, 48)).segment(frame)
    np.testing.assert_array_equal(backend.inputs[0], cv2.resize(frame, (48, 36),
                                                                interpolation=cv2.INTER_LINEAR))
    tall = np.random.default_rng(2).integers(0, 256, (100, 40, 3), np.uint8)
    Segmenter(backend, (36, 48)).segment(tall)  # one side shrinks below half: area at once
    np.testing.assert_array_equal(backend.inputs[0], cv2.resize(tall, (48, 36),
                                                                interpolation=cv2.INTER_AREA))


def test_frames_over_twice_the_inference_size_are_halved_then_resized_bilinearly():
    backend = StripesBackend()
    segmenter = Segmenter(backend, (36, 48))
    frame = np.random.default_rng(3).integers(0, 256, (108 * 2, 192 * 2, 3), np.uint8)
    segmenter.segment(frame)  # 216x384 -> 108x192 -> 54x96 (2x2 means), bilinear to 36x48
    quarter = cv2.resize(cv2.resize(frame, (192, 108), interpolation=cv2.INTER_AREA),
                         (96, 54), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(backend.inputs[0], cv2.resize(
        quarter, (48, 36), interpolation=cv2.INTER_LINEAR))
    halved = [array for key, (array, _) in segmenter._buffers.items() if key[0] == 'halved']
    assert [array.shape for array in halved] == [(108, 192, 3), (54, 96, 3)]
    segmenter.segment(frame)
    assert all(np.shares_memory(array, segmenter._buffers[('halved', array.shape[:2])][0])
               for array in halved)  # reused, not allocated per frame


def halving_bytes(side: int, target: tuple[int, int] = (30, 40)) -> int:
    """Bytes of the halved copies of a (side, side, 3) uint8 frame on its way to ``target``."""
    total, height, width = 0, side, side
    while height >= 2 * target[0] and width >= 2 * target[1]:
        height, width = height // 2, width // 2
        total += height * width * 3
    return total


def test_buffers_of_earlier_frame_sizes_are_bounded_in_bytes():
    segmenter = Segmenter(StripesBackend(), (30, 40), buffer_bytes=2_000_000)
    current = 0
    for side in range(100, 400, 7):  # 43 frame sizes, each (side, side)
        result = segmenter.segment(np.zeros((side, side, 3), np.uint8), probabilities=True)
        current = result.labels.nbytes + result.confidence.nbytes + result.probabilities.nbytes
        assert segmenter.buffered_bytes <= max(2_000_000,
                                               current + 30 * 40 * 3 + halving_bytes(side))
    # the largest frame's own buffers (11 + 1 float32 planes and labels) exceed the budget;
    # what stays is what the last call used: those, the (1, 30, 40, 3) input batch and the
    # halved copies of the frame (197x197, 98x98, 49x49)
    assert current == 394 * 394 * (12 * 4 + 1)
    assert halving_bytes(394) == (197 * 197 + 98 * 98 + 49 * 49) * 3
    assert segmenter.buffered_bytes == current + 30 * 40 * 3 + halving_bytes(394)
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
