"""`seg_tool evaluate` / `compare` and their scoring loop: resize path, latencies, bootstrap."""

import json

import numpy as np
import pytest

from conftest import CAMVID_FIXTURES
from seg_node.tools.cli.main import main
from seg_node.core.classes import load_classes
from seg_node.evaluation.scoring import (compare_models, comparison_to_dict, evaluate_frames,
                                         format_comparison, latency_percentiles)
from seg_node.core.inference.base import SegResult
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.evaluation.metrics import ConfusionMatrix
from seg_node.core.pipeline import Segmenter


def evaluate_json(tmp_path, tiny_model, *extra: str) -> dict:
    report = tmp_path / f'evaluate{len(extra)}.json'
    assert main(['evaluate', '--model', str(tiny_model), '--data', str(CAMVID_FIXTURES),
                 '--threads', '1', '--json', str(report), *extra]) == 0
    return json.loads(report.read_text())


def test_inference_size_scores_the_nodes_resize_path(tmp_path, tiny_model, camvid_pairs):
    """--inference-size scores exactly what the node publishes at that inference_size."""
    segmenter = Segmenter(OnnxRuntimeBackend(tiny_model, num_threads=1), (176, 240))
    expected = ConfusionMatrix(11)
    for image, label in camvid_pairs:
        labels = segmenter.segment(image, confidence=False).labels
        assert labels.shape == label.shape
        expected.update(label, labels)
    half = evaluate_json(tmp_path, tiny_model, '--inference-size', '176', '240')
    full = evaluate_json(tmp_path, tiny_model)
    assert half['inference_size'] == [176, 240] and full['inference_size'] == 'frame size'
    assert half['frames'] == full['frames'] == 3
    assert half['miou'] == pytest.approx(expected.scores().miou, abs=1e-6)
    assert half['miou'] != pytest.approx(full['miou'], abs=1e-4)


def test_too_small_inference_size_is_one_line_error(tiny_model, capsys):
    assert main(['evaluate', '--model', str(tiny_model), '--data', str(CAMVID_FIXTURES),
                 '--inference-size', '8', '240']) == 1
    error = capsys.readouterr().err
    assert error == ('seg_tool: error: inference size [8, 240] is invalid; give height and '
                     'width of at least 16 each\n')


def test_evaluate_frames_times_each_frame_and_ignores_void(camvid_pairs):
    image, label = camvid_pairs[0]

    class Perfect:
        def infer(self, frame, confidence=True, probabilities=False):
            assert frame is image and confidence is False
            return SegResult(np.where(label < 11, label, 0), None, None)

    matrix, latencies = evaluate_frames(Perfect().infer, [(image, label)] * 2, 11)
    assert len(latencies) == 2 and all(seconds >= 0 for seconds in latencies)
    assert matrix.scores().pixel_accuracy == 1.0
    assert matrix.matrix.sum() == 2 * int((label < 11).sum())
    assert latency_percentiles([0.001, 0.003])['p50'] == pytest.approx(2.0)


def test_evaluate_frames_hands_out_each_frames_matrix(camvid_pairs):
    frame_matrices = []
    matrix, _ = evaluate_frames(lambda image, confidence: SegResult(
        np.full(image.shape[:2], 3, np.uint8), None, None), camvid_pairs, 11, frame_matrices)
    assert len(frame_matrices) == len(camvid_pairs)
    np.testing.assert_array_equal(sum(frame_matrices), matrix.matrix)
    assert [int(m[3, 3]) for m in frame_matrices] == [int((label == 3).sum())
                                                      for _, label in camvid_pairs]


def test_compare_pairs_models_on_the_same_resamples(camvid_pairs):
    def perfect(image, confidence):
        return SegResult(next(label for i, label in camvid_pairs if i is image), None, None)

    def all_road(image, confidence):
        return SegResult(np.full(image.shape[:2], 3, np.uint8), None, None)

    images = [image for image, _ in camvid_pairs]
    labels = [label for _, label in camvid_pairs]
    comparison = compare_models([perfect, all_road, perfect], images, labels, 11, block=1,
                                samples=200)
    assert comparison.resampled_iou.shape == (3, 200, 11)
    report = comparison_to_dict(comparison, ['perfect', 'road', 'again'], load_classes().names)
    assert set(report) == {'road', 'again'}
    pole = report['road']['pole']
    assert (pole['baseline'], pole['iou'], pole['difference']) == (1.0, 0.0, -1.0)
    assert (pole['low'], pole['high'], pole['share_better']) == (-1.0, -1.0, 0.0)
    road_iou = comparison.scores[1].iou[3]
    assert report['road']['road']['difference'] == pytest.approx(road_iou - 1.0, abs=1e-4)
    assert report['road']['mIoU']['iou'] == pytest.approx(comparison.scores[1].miou, abs=1e-4)
    assert all(row['difference'] == row['low'] == row['high'] == 0.0
               for row in report['again'].values())
    table = format_comparison(report, 'perfect')
    assert 'road against perfect (block bootstrap, 90% interval' in table
    assert '1.000   0.000   -1.000  [ -1.000,  -1.000]    0.00' in table


def test_compare_command_writes_both_models_scores(tmp_path, tiny_model, capsys):
    report = tmp_path / 'compare.json'
    assert main(['compare', '--model', str(tiny_model), '--model', str(tiny_model),
                 '--data', str(CAMVID_FIXTURES), '--block', '2', '--samples', '50',
                 '--threads', '1', '--json', str(report)]) == 0
    result = json.loads(report.read_text())
    alone = evaluate_json(tmp_path, tiny_model)
    assert (result['frames'], result['block'], result['samples']) == (3, 2, 50)
    assert [scores['miou'] for scores in result['scores']] == [alone['miou']] * 2
    rows = result['against_first'][str(tiny_model)]
    assert rows['mIoU']['difference'] == 0.0 and rows['mIoU']['share_better'] == 0.0


@pytest.mark.parametrize(('extra', 'message'), [
    ([], 'compare needs at least two --model'),
    (['--model', 'MODEL', '--block', '4'], '--block 4 needs to be in 1..3'),
    (['--model', 'MODEL', '--interval', '1.5'], '--interval 1.5 needs to be in (0, 1)'),
])
def test_compare_refuses_one_model_and_long_blocks(tiny_model, capsys, extra, message):
    arguments = ['compare', '--model', str(tiny_model), '--data', str(CAMVID_FIXTURES),
                 *[str(tiny_model) if item == 'MODEL' else item for item in extra]]
    assert main(arguments) == 2
    assert message in capsys.readouterr().err
