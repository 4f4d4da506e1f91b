"""Resolution ceiling: coarse majority labels, nearest upsampling, scored by hand."""

import json

import numpy as np
import pytest

from conftest import CAMVID_FIXTURES
from seg_node.tools.cli.main import main as seg_tool
from seg_node.evaluation.scoring import evaluate_frames
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.evaluation.resolution import (cell_decisions, coarse_labels, horizontal_run_lengths,
                                            model_at_strides, recall_by_width, resolution_ceiling)

VOID = 3


def pole_scene() -> np.ndarray:
    """(4, 6) truth: road (0) with a one-pixel-wide pole (1) in column 1 and void in a corner."""
    truth = np.zeros((4, 6), np.uint8)
    truth[:, 1] = 1
    truth[:2, 4:] = VOID
    return truth


def test_cells_take_their_majority_class_and_void_only_cells_stay_void():
    truth = pole_scene()
    coarse = coarse_labels(truth, 2, num_classes=3)
    # Each 2x2 cell over the pole has two pole and two road pixels: the tie goes to the
    # lower id (road), so the pole vanishes; the top-right cell is all void.
    expected = np.zeros((4, 6), np.uint8)
    expected[:2, 4:] = VOID
    np.testing.assert_array_equal(coarse, expected)
    np.testing.assert_array_equal(coarse_labels(truth, 1, num_classes=3), truth)


def test_odd_sizes_are_padded_and_cropped_back():
    truth = np.ones((5, 7), np.uint8)
    truth[4, :] = 2
    coarse = coarse_labels(truth, 4, num_classes=3)
    assert coarse.shape == (5, 7)
    # The bottom row of cells holds only the class-2 row (the rest is padding).
    np.testing.assert_array_equal(coarse[4], 2)
    np.testing.assert_array_equal(coarse[:4], 1)


def test_ceiling_scores_the_lost_pole_by_hand():
    scores = resolution_ceiling([pole_scene()], 2, num_classes=3).scores()
    # Road: 16 true pixels, all 16 predicted road plus the 4 pole pixels -> 16 / 20.
    assert scores.iou[0] == pytest.approx(16 / 20)
    assert scores.iou[1] == 0.0
    assert np.isnan(scores.iou[2])


def test_ceiling_falls_with_stride_on_real_frames(camvid_pairs):
    labels = [label for _, label in camvid_pairs]
    mious = [resolution_ceiling(labels, stride, 11).scores().miou for stride in (1, 4, 16)]
    assert mious[0] == 1.0
    assert mious[0] > mious[1] > mious[2]


def test_command_writes_one_report_per_stride(tmp_path, capsys, tiny_model):
    report = tmp_path / 'ceiling.json'
    assert seg_tool(['resolution-ceiling', '--data', str(CAMVID_FIXTURES), '--strides', '16',
                     '2', '--model', str(tiny_model), '--threads', '1',
                     '--json', str(report)]) == 0
    payload = json.loads(report.read_text())
    assert payload['frames'] == 3 and set(payload['strides']) == {'16', '2'}
    assert payload['strides']['2']['miou'] > payload['strides']['16']['miou']
    assert set(payload['model_strides']) == {'16', '2'}
    assert payload['model'] == str(tiny_model)
    assert 'pole' in capsys.readouterr().out


def test_cell_decisions_sum_the_evidence_of_each_cell():
    scores = np.zeros((2, 2, 4), np.float32)
    scores[0] = [[0.6, 0.6, 0.0, 0.0], [0.6, 0.6, 0.2, 0.2]]
    scores[1] = [[0.4, 0.4, 0.9, 0.1], [0.4, 0.4, 0.0, 0.0]]
    # Left cell: 2.4 vs 1.6 -> class 0; right cell: 0.4 vs 1.0 -> class 1.
    np.testing.assert_array_equal(cell_decisions(scores, 2), [[0, 0, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_array_equal(cell_decisions(scores, 1), scores.argmax(axis=0))


def test_model_at_stride_one_is_the_model_and_coarser_cells_differ(tiny_model, camvid_pairs):
    backend = OnnxRuntimeBackend(tiny_model, num_threads=1)
    matrices = model_at_strides(backend, camvid_pairs, (1, 16), 11)
    exported, _ = evaluate_frames(backend.infer, camvid_pairs, 11)
    np.testing.assert_array_equal(matrices[1].matrix, exported.matrix)
    assert matrices[16].matrix.sum() == exported.matrix.sum()
    assert not np.array_equal(matrices[16].matrix, exported.matrix)


def test_run_lengths_are_the_width_of_each_horizontal_run():
    mask = np.array([[1, 1, 0, 1],
                     [0, 1, 1, 1],
                     [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(horizontal_run_lengths(mask),
                                  [[2, 2, 0, 1], [0, 3, 3, 3], [0, 0, 0, 0]])


def test_recall_by_width_counts_thin_and_wide_pole_pixels():
    truth = pole_scene()
    truth[:, 2] = 1  # the pole is now 2 pixels wide
    truth[3, 5] = 1  # and a 1-pixel pole fragment
    prediction = np.zeros_like(truth)
    prediction[:2, 1] = 1  # the top half of the wide pole's left column is found
    pixels, recalled = recall_by_width([(truth, prediction)], class_id=1, max_width=2)
    np.testing.assert_array_equal(pixels, [1, 8])
    np.testing.assert_array_equal(recalled, [0, 2])
