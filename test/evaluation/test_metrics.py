"""ConfusionMatrix maths against hand-computed matrices, including void and absent classes."""

import json
import math

import numpy as np
import pytest

from seg_node.evaluation.metrics import (block_bootstrap_iou, class_iou, ConfusionMatrix,
                                         format_table, scores_to_dict)

VOID = 3


def test_iou_and_accuracies_match_hand_computation():
    truth = np.array([[0, 0, 1, 1], [2, 2, VOID, 0]])
    prediction = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    matrix = ConfusionMatrix(3)
    matrix.update(truth, prediction)
    # rows truth, columns prediction; the void pixel (truth 3) is not counted.
    np.testing.assert_array_equal(matrix.matrix, [[2, 1, 0], [0, 2, 0], [1, 0, 1]])
    scores = matrix.scores()
    np.testing.assert_allclose(scores.iou, [2 / 4, 2 / 3, 1 / 2])
    assert scores.miou == pytest.approx((2 / 4 + 2 / 3 + 1 / 2) / 3)
    assert scores.pixel_accuracy == pytest.approx(5 / 7)
    np.testing.assert_allclose(scores.class_accuracy, [2 / 3, 1.0, 1 / 2])
    assert scores.mean_class_accuracy == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    # columns: predicted 0 three times (2 right), 1 three times (2 right), 2 once (right).
    np.testing.assert_allclose(scores.precision, [2 / 3, 2 / 3, 1.0])
    np.testing.assert_array_equal(scores.matrix, matrix.matrix)


def test_absent_class_is_excluded_from_the_mean_but_false_positives_count():
    matrix = ConfusionMatrix(3)
    matrix.update(np.array([0, 0, 1]), np.array([0, 0, 1]))
    scores = matrix.scores()
    assert math.isnan(scores.iou[2]) and scores.miou == 1.0
    matrix.update(np.array([1]), np.array([2]))
    scores = matrix.scores()
    assert scores.iou[2] == 0.0
    assert scores.miou == pytest.approx((1.0 + 1 / 2 + 0.0) / 3)


def test_update_accumulates_and_merge_adds():
    first, second = ConfusionMatrix(2), ConfusionMatrix(2)
    first.update(np.array([0, 1]), np.array([0, 0]))
    second.update(np.array([1, 1]), np.array([1, 1]))
    first.merge(second)
    np.testing.assert_array_equal(first.matrix, [[1, 0], [1, 2]])
    with pytest.raises(ValueError, match='differ'):
        first.update(np.zeros(2), np.zeros(3))


def test_report_formats_table_and_json_without_nan():
    matrix = ConfusionMatrix(2)
    matrix.update(np.array([0, 0]), np.array([0, 0]))
    payload = scores_to_dict(matrix.scores(), ['road', 'car'])
    assert payload['per_class_iou'] == {'road': 1.0, 'car': None}
    assert payload['miou'] == 1.0
    assert payload['per_class_recall'] == {'road': 1.0, 'car': None}
    assert payload['per_class_precision'] == {'road': 1.0, 'car': None}
    assert payload['confusion_matrix'] == [[2, 0], [0, 0]]
    json.dumps(payload, allow_nan=False)
    table = format_table(matrix.scores(), ['road', 'car'])
    assert table.splitlines()[0].split() == ['class', 'IoU', 'recall', 'prec']
    assert table.splitlines()[1].split() == ['road', '1.000', '1.000', '1.000']
    assert table.splitlines()[2].split() == ['car', 'nan', 'nan', 'nan']
    assert table.splitlines()[3].split() == ['mIoU', '1.000']


def test_precision_separates_false_positives_from_false_negatives():
    over, under = ConfusionMatrix(2), ConfusionMatrix(2)
    over.update(np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1]))
    under.update(np.array([0, 1, 1, 1]), np.array([0, 0, 0, 1]))
    # same IoU for class 1 (1/3), opposite failure: over-predicted vs missed.
    assert over.scores().iou[1] == pytest.approx(under.scores().iou[1])
    assert over.scores().precision[1] == pytest.approx(1 / 3)
    assert over.scores().class_accuracy[1] == 1.0
    assert under.scores().precision[1] == 1.0
    assert under.scores().class_accuracy[1] == pytest.approx(1 / 3)


def _frame(num_classes: int, truth: list[int], prediction: list[int]) -> np.ndarray:
    matrix = ConfusionMatrix(num_classes)
    matrix.update(np.array(truth), np.array(prediction))
    return matrix.matrix


def test_class_iou_of_a_stack_matches_each_matrix():
    frames = np.stack([_frame(3, [0, 0, 1, 2], [0, 1, 1, 1]), _frame(3, [2, 2], [2, 0])])
    expected = [ConfusionMatrix(3) for _ in frames]
    for matrix, frame in zip(expected, frames, strict=True):
        matrix.matrix += frame
    np.testing.assert_array_equal(class_iou(frames),
                                  np.stack([m.scores().iou for m in expected]))
    np.testing.assert_allclose(class_iou(frames[0]), [0.5, 1 / 3, 0.0])


def test_bootstrap_with_one_block_of_all_frames_is_the_whole_set():
    frames = np.stack([_frame(3, [0, 1, 2], [0, 1, 1]), _frame(3, [2, 2, 0], [2, 2, 2])])
    resampled = block_bootstrap_iou(frames[None], block=2, samples=5)
    assert resampled.shape == (1, 5, 3)
    np.testing.assert_allclose(resampled[0], np.tile(class_iou(frames.sum(axis=0)), (5, 1)))


def test_bootstrap_draws_frames_with_replacement():
    right, wrong = _frame(2, [0] * 10, [0] * 10), _frame(2, [0] * 10, [1] * 10)
    resampled = block_bootstrap_iou(np.stack([right, wrong])[None], block=1, samples=4000)[0]
    # both frames right: 1.0 (class 1 absent); one each: 0.5; both wrong: 0.0
    shares = {value: float(np.mean(resampled[:, 0] == value)) for value in (1.0, 0.5, 0.0)}
    assert shares == pytest.approx({1.0: 0.25, 0.5: 0.5, 0.0: 0.25}, abs=0.03)
    assert np.isnan(resampled[resampled[:, 0] == 1.0, 1]).all()
    assert (resampled[resampled[:, 0] < 1.0, 1] == 0.0).all()


@pytest.mark.parametrize(('block', 'always_adjacent'), [(2, True), (1, False)])
def test_bootstrap_blocks_are_runs_of_consecutive_frames(block, always_adjacent):
    # frame i shows only class i, so the classes present in a resample are the frames drawn
    frames = np.stack([_frame(5, [i], [i]) for i in range(5)])
    present = np.isfinite(block_bootstrap_iou(frames[None], block, samples=500)[0])
    adjacent = (present[:, :-1] & present[:, 1:]).any(axis=1)
    assert adjacent.all() == always_adjacent


def test_bootstrap_refuses_blocks_longer_than_the_frames():
    with pytest.raises(ValueError, match='block of 3 frames needs to be in 1..2'):
        block_bootstrap_iou(np.zeros((1, 2, 3, 3), np.int64), block=3, samples=1)
