"""UINT8-at-the-edges rule and rewrite, fp16 copies and the precision a model file carries."""

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from seg_node.core.errors import ConfigError
from seg_node.models import deploy_graph
from seg_node.core.inference.base import label_agreement
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend


def old_style_copy(model_path: Path, output: Path) -> Path:
    """Write ``model_path`` with older exports' uint8 layout (Transpose, then Cast; uint8 crop)."""
    model = onnx.load(str(model_path))
    graph = model.graph
    cast = next(node for node in graph.node if node.op_type == 'Cast'
                and node.input[0] == 'image')
    transpose = next(node for node in graph.node if node.input and
                     node.input[0] == cast.output[0] and node.op_type == 'Transpose')
    deploy_graph._swap(graph, cast, transpose)
    while True:  # _swap rebuilds the node list: look both nodes up again each time
        labels_cast = next(node for node in graph.node if 'labels' in node.output)
        crop = next(node for node in graph.node if labels_cast.input[0] in node.output)
        if crop.op_type != 'Slice':
            break
        deploy_graph._swap(graph, crop, labels_cast)
    onnx.save(model, str(output))
    return output


@pytest.fixture(scope='module')
def old_style(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return old_style_copy(tiny_model, tmp_path_factory.mktemp('old') / 'old.onnx')


def test_exported_graph_casts_the_image_first_and_the_labels_last(tiny_model):
    graph = onnx.load(str(tiny_model)).graph
    assert deploy_graph.uint8_edge_violation(tiny_model) is None
    readers = [node for node in graph.node if 'image' in node.input]
    assert [node.op_type for node in readers] == ['Cast']
    assert deploy_graph._cast_to(readers[0]) == TensorProto.FLOAT
    producer = next(node for node in graph.node if 'labels' in node.output)
    assert deploy_graph._cast_to(producer) == TensorProto.UINT8


def test_violations_name_the_node(old_style):
    message = deploy_graph.uint8_edge_violation(old_style)
    assert message.startswith("node '/Transpose' (Transpose) reads the uint8 input 'image'")
    model = onnx.load(str(old_style))
    deploy_graph.move_uint8_to_edges(model)
    labels = next(node for node in model.graph.node if 'labels' in node.output)
    labels.output[0] = 'labels_uint8'
    model.graph.node.append(onnx.helper.make_node('Identity', ['labels_uint8'], ['labels'],
                                                  name='/Crop'))
    assert deploy_graph.uint8_edge_violation(model) == (
        "the uint8 output 'labels' is produced by node '/Crop' (Identity), not a Cast")


def test_rewrite_moves_uint8_to_the_edges_with_identical_outputs(old_style, tiny_model,
                                                                 tmp_path, camvid_rgb):
    model = deploy_graph.move_uint8_to_edges(onnx.load(str(old_style)))
    assert deploy_graph.uint8_edge_violation(model) is None
    onnx.checker.check_model(model, full_check=True)
    fixed = tmp_path / 'fixed.onnx'
    onnx.save(model, str(fixed))
    before = OnnxRuntimeBackend(old_style).infer(camvid_rgb, probabilities=True)
    after = OnnxRuntimeBackend(fixed).infer(camvid_rgb, probabilities=True)
    np.testing.assert_array_equal(after.labels, before.labels)
    np.testing.assert_array_equal(after.confidence, before.confidence)
    np.testing.assert_array_equal(after.probabilities, before.probabilities)
    unchanged = onnx.load(str(tiny_model))
    assert deploy_graph.move_uint8_to_edges(onnx.load(str(tiny_model))) == unchanged


def test_fp16_copy_keeps_the_contract_types_and_metadata(tiny_model, tmp_path, camvid_pairs):
    copy = deploy_graph.fp16_copy(tiny_model, tmp_path / 'tiny_fp16.onnx')
    assert deploy_graph.model_precision(tiny_model) == 'fp32'
    assert deploy_graph.model_precision(copy) == 'fp16'
    assert deploy_graph.uint8_edge_violation(copy) is None
    fp32, fp16 = OnnxRuntimeBackend(tiny_model), OnnxRuntimeBackend(copy)
    assert fp16.info == fp32.info
    result = fp16.infer(camvid_pairs[0][0], probabilities=True)
    assert (result.labels.dtype, result.confidence.dtype) == (np.uint8, np.float32)
    agreement, _ = label_agreement(fp32, fp16, [image for image, _ in camvid_pairs])
    assert agreement >= 0.99
    with pytest.raises(ConfigError, match='only an fp32 model can be converted to fp16; '
                                          'this one is fp16'):
        deploy_graph.fp16_copy(copy, tmp_path / 'again.onnx')


def test_model_for_precision_picks_or_makes_the_file(tiny_model, tmp_path):
    model = Path(shutil.copy(tiny_model, tmp_path / 'net.onnx'))
    copies = tmp_path / 'engines'
    assert deploy_graph.model_for_precision(model, 'fp32', copies) == model
    fp16 = deploy_graph.model_for_precision(model, 'fp16', copies)
    assert fp16.parent == copies and fp16.name.startswith('net.fp16.')
    written = fp16.stat().st_mtime_ns
    assert deploy_graph.model_for_precision(model, 'fp16', copies) == fp16
    assert fp16.stat().st_mtime_ns == written
    assert deploy_graph.model_for_precision(fp16, 'fp16', copies) == fp16
    with pytest.raises(ConfigError, match=r'net.onnx is an fp32 model: precision int8 needs a '
                                          r'QDQ model: make one with `seg_tool quantize'):
        deploy_graph.model_for_precision(model, 'int8', copies)
    with pytest.raises(ConfigError, match='is an fp16 model: precision fp32 needs the fp32'):
        deploy_graph.model_for_precision(fp16, 'fp32', copies)
    with pytest.raises(ConfigError, match="precision 'bf16' is invalid"):
        deploy_graph.model_for_precision(model, 'bf16', copies)
