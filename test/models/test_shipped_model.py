"""The bundled default model: the ONNX contract, its class file, TensorRT rules, accuracy."""

import pytest

from seg_node.core.classes import load_classes
from seg_node.evaluation.scoring import evaluate_frames
from seg_node.models.deploy_graph import (model_precision, operator_report,
                                          uint8_edge_violation)
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.models import DEFAULT_MODEL_PATH


@pytest.fixture(scope='module')
def shipped() -> OnnxRuntimeBackend:
    """Load the bundled model (checked against the ONNX contract on load)."""
    return OnnxRuntimeBackend(DEFAULT_MODEL_PATH, num_threads=1)


def test_shipped_model_is_small_and_names_the_bundled_classes(shipped):
    assert DEFAULT_MODEL_PATH.stat().st_size < 20 * 2**20
    assert shipped.info.class_names == load_classes().names
    assert shipped.info.inference_size == (360, 480)


def test_shipped_model_is_fp32_with_tensorrt_operators_and_uint8_only_at_its_edges():
    _, unsupported = operator_report(DEFAULT_MODEL_PATH)
    assert unsupported == []
    assert uint8_edge_violation(DEFAULT_MODEL_PATH) is None
    assert model_precision(DEFAULT_MODEL_PATH) == 'fp32'


def test_shipped_model_segments_real_val_frames(shipped, camvid_pairs):
    classes = load_classes()
    matrix, _ = evaluate_frames(shipped.infer, camvid_pairs, classes.num_classes)
    scores = matrix.scores()
    # 0.74 when shipped on these three 0016E5 val frames; an untrained net scores about 0.02.
    assert scores.miou > 0.6
    assert scores.iou[classes.names.index('road')] > 0.9
