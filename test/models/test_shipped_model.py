"""The bundled default model: the ONNX contract, its class file, TensorRT operators, accuracy."""

import pytest

from seg_node.core.classes import load_classes
from seg_node.evaluation.scoring import evaluate_frames
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.models import DEFAULT_MODEL_PATH

pytest.importorskip('torch')  # operator_report lives with the exporter, which needs torch.
from seg_node.training.export import operator_report  # noqa: E402


@pytest.fixture(scope='module')
def shipped() -> OnnxRuntimeBackend:
    """Load the bundled model (checked against the ONNX contract on load)."""
    return OnnxRuntimeBackend(DEFAULT_MODEL_PATH, num_threads=1)


def test_shipped_model_is_small_and_names_the_bundled_classes(shipped):
    assert DEFAULT_MODEL_PATH.stat().st_size < 20 * 2**20
    assert shipped.info.class_names == load_classes().names
    assert shipped.info.inference_size == (360, 480)


def test_shipped_model_uses_only_tensorrt_operators():
    _, unsupported = operator_report(DEFAULT_MODEL_PATH)
    assert unsupported == []


def test_shipped_model_segments_real_val_frames(shipped, camvid_pairs):
    classes = load_classes()
    matrix, _ = evaluate_frames(shipped.infer, camvid_pairs, classes.num_classes)
    scores = matrix.scores()
    # 0.74 when shipped on these three 0016E5 val frames; an untrained net scores about 0.02.
    assert scores.miou > 0.6
    assert scores.iou[classes.names.index('road')] > 0.9
