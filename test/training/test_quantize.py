"""INT8 QDQ quantisation of the tiny model on real CamVid fixture frames (CPU, ONNX Runtime)."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import CAMVID_FIXTURES
from onnx import numpy_helper

from seg_node.core.classes import load_classes
from seg_node.tools.cli.main import main
from seg_node.core.errors import ConfigError, ModelLoadError
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.models.deploy_graph import operator_report, TENSORRT_OPERATORS
from seg_node.training import quantize as quantize_module
from seg_node.training.quantize import (calibration_images, compare_int8, consumers,
                                        META_QUANTIZATION, quantize_model)

# Measured on the seeded random `tiny_model`: 96.8% of pixels keep their FP32 label (a random
# network's class scores are nearly tied, so this is a lower bound for trained models).
MIN_LABEL_AGREEMENT = 0.95


@pytest.fixture(scope='module')
def int8_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """Quantise the tiny model calibrated on two fixture frames; return (path, report)."""
    images = calibration_images(CAMVID_FIXTURES, 'val', 2)
    output = tmp_path_factory.mktemp('int8') / 'tiny_int8.onnx'
    return output, quantize_model(tiny_model, output, images)


def test_every_conv_reads_symmetric_int8_qdq_and_nothing_else_is_quantised(int8_model):
    path, report = int8_model
    graph = onnx.load(str(path)).graph
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    convs = [node for node in graph.node if node.op_type == 'Conv']
    assert report.quantized_convs == report.convs == len(convs) == 42
    for conv in convs:
        data, weight = (producers[name] for name in conv.input[:2])
        assert data.op_type == weight.op_type == 'DequantizeLinear'
        assert producers[data.input[0]].op_type == 'QuantizeLinear'
        weight_scale = initializers[weight.input[1]]
        output_channels = initializers[weight.input[0]].shape[0]
        assert weight_scale.shape == (output_channels,)
        assert initializers[data.input[1]].size == 1
        if len(conv.input) > 2:
            assert conv.input[2] in initializers
            assert initializers[conv.input[2]].dtype == np.float32
    readers = consumers(graph)
    for node in graph.node:
        if node.op_type == 'DequantizeLinear':
            # A block's input also feeds its residual Add through the same pair, the placement
            # TensorRT fuses into an int8 conv + add; nothing after the head reads Q/DQ.
            reader_types = {reader.op_type for reader in readers[node.output[0]]}
            assert 'Conv' in reader_types and reader_types <= {'Conv', 'Add'}
            assert initializers.get(node.input[0], np.int8(0)).dtype == np.int8
        if node.op_type in ('QuantizeLinear', 'DequantizeLinear'):
            zero_point = initializers[node.input[2]]
            assert zero_point.dtype == np.int8 and not zero_point.any()


def test_qdq_model_keeps_contract_metadata_and_tensorrt_operators(tiny_model, int8_model):
    path, report = int8_model
    assert OnnxRuntimeBackend(path).info == OnnxRuntimeBackend(tiny_model).info
    source = {prop.key: prop.value for prop in onnx.load(str(tiny_model)).metadata_props}
    quantized = {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    assert quantized.pop(META_QUANTIZATION).endswith('2 calibration frames')
    assert quantized == source
    operators, unsupported = operator_report(path)
    assert unsupported == report.unsupported == []
    assert {'QuantizeLinear', 'DequantizeLinear', 'Conv'} <= set(operators)
    assert set(operators) <= TENSORRT_OPERATORS


def test_int8_labels_agree_with_fp32_on_real_frames(tiny_model, int8_model, camvid_pairs):
    fp32 = OnnxRuntimeBackend(tiny_model)
    int8 = OnnxRuntimeBackend(int8_model[0])
    agreements = []
    for image, _ in camvid_pairs:
        reference = fp32.infer(image).labels.copy()
        result = int8.infer(image)
        assert result.labels.dtype == np.uint8 and result.confidence.dtype == np.float32
        agreements.append(float((result.labels == reference).mean()))
    assert len(agreements) == 3
    assert min(agreements) >= MIN_LABEL_AGREEMENT, agreements


def test_calibration_images_from_root_split_file_and_plain_folder(tmp_path: Path):
    from_root = calibration_images(CAMVID_FIXTURES, 'val', 2)
    assert [path.name for path in from_root] == ['0016E5_07959.png', '0016E5_07963.png']
    from_file = calibration_images(CAMVID_FIXTURES / 'val.txt', count=10)
    assert [path.name for path in from_file] == ['0016E5_07959.png', '0016E5_07961.png',
                                                 '0016E5_07963.png']
    folder = tmp_path / 'frames'
    folder.mkdir()
    for name in ('b.png', 'a.JPG', 'notes.txt'):
        (folder / name).write_bytes(b'')
    assert [path.name for path in calibration_images(folder, count=5)] == ['a.JPG', 'b.png']
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ConfigError, match='no calibration images'):
        calibration_images(empty)
    with pytest.raises(ConfigError, match='at least 1'):
        calibration_images(folder, count=0)


def test_quantize_refuses_a_model_outside_the_contract(tmp_path: Path):
    broken = tmp_path / 'broken.onnx'
    broken.write_bytes(b'not a model')
    with pytest.raises(ModelLoadError, match='cannot load ONNX model'):
        quantize_model(broken, tmp_path / 'out.onnx', [])


def test_compare_int8_scores_and_times_both_models(tiny_model, int8_model, camvid_pairs):
    images = [image for image, _ in camvid_pairs]
    labels = [label for _, label in camvid_pairs]
    result = compare_int8(tiny_model, int8_model[0], images, labels, load_classes(), 1)
    assert (result['frames'], result['threads']) == (3, 1)
    for name in ('fp32', 'int8'):
        assert 0.0 <= result[name]['miou'] <= 1.0
        assert len(result[name]['per_class_iou']) == 11
        assert result[name]['latency_ms']['p50'] > 0
    assert result['miou_drop_points'] == pytest.approx(
        100 * (result['fp32']['miou'] - result['int8']['miou']), abs=1e-3)
    assert result['speedup_p50'] == pytest.approx(
        result['fp32']['latency_ms']['p50'] / result['int8']['latency_ms']['p50'], rel=1e-2)
    with pytest.raises(ConfigError, match='matching frames and labels'):
        compare_int8(tiny_model, int8_model[0], images, labels[:1], load_classes())


def test_seg_tool_quantize_writes_the_model_and_compare_json(tiny_model, tmp_path, capsys):
    output = tmp_path / 'cli_int8.onnx'
    status = main(['quantize', str(tiny_model), '--calibration-images', str(CAMVID_FIXTURES),
                   '--split', 'val', '--count', '1', '--output', str(output), '--compare-on',
                   str(CAMVID_FIXTURES), '--compare-limit', '1', '--threads', '1'])
    assert status == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f'wrote {output} (') and '42/42 Conv quantised' in printed
    result = json.loads(printed[printed.index('{'):])
    assert result['frames'] == 1 and result['int8']['model'] == str(output)
    assert OnnxRuntimeBackend(output).info.num_classes == 11


@pytest.fixture(scope='module')
def cpu_int8_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """Quantise the tiny model for ONNX Runtime's CPU kernels; return (path, report)."""
    images = calibration_images(CAMVID_FIXTURES, 'val', 2)
    output = tmp_path_factory.mktemp('int8_cpu') / 'tiny_int8_cpu.onnx'
    return output, quantize_model(tiny_model, output, images, target='cpu')


def test_cpu_target_quantises_conv_outputs_in_uint8_except_the_head(tiny_model, cpu_int8_model):
    path, report = cpu_int8_model
    graph = onnx.load(str(path)).graph
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    readers = consumers(graph)
    convs = [node for node in graph.node if node.op_type == 'Conv']
    head = [conv for conv in convs if 'ReduceMax' in
            {reader.op_type for reader in readers[conv.output[0]]}]
    assert len(convs) == 42 and len(head) == 1
    assert (report.quantized_convs, report.convs) == (41, 42)
    for conv in convs:
        data = producers[conv.input[0]]
        if conv is head[0]:
            # float weights and float logits: the softmax and argmax see unquantised scores
            assert initializers[conv.input[1]].dtype == np.float32
            assert 'QuantizeLinear' not in {reader.op_type for reader in readers[conv.output[0]]}
            continue
        # every other Conv reads uint8 activations and writes into a QuantizeLinear, the
        # pattern ONNX Runtime fuses into QLinearConv
        assert data.op_type == 'DequantizeLinear'
        assert initializers[data.input[2]].dtype == np.uint8
        assert {reader.op_type for reader in readers[conv.output[0]]} == {'QuantizeLinear'}
    metadata = {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    assert metadata[META_QUANTIZATION].startswith('int8 QDQ for ONNX Runtime CPU')
    assert OnnxRuntimeBackend(path).info == OnnxRuntimeBackend(tiny_model).info


def test_cpu_target_labels_agree_with_fp32_on_real_frames(tiny_model, cpu_int8_model,
                                                          camvid_pairs):
    fp32 = OnnxRuntimeBackend(tiny_model)
    int8 = OnnxRuntimeBackend(cpu_int8_model[0])
    for image, _ in camvid_pairs:
        reference = fp32.infer(image).labels.copy()
        assert float((int8.infer(image).labels == reference).mean()) >= MIN_LABEL_AGREEMENT


def test_unknown_quantisation_target_is_refused_with_the_choices(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="unknown quantisation target 'gpu'; valid: "
                                          'tensorrt, cpu'):
        quantize_model(tiny_model, tmp_path / 'out.onnx', [], target='gpu')


def test_compare_int8_times_sessions_that_do_not_spin(tiny_model, int8_model, camvid_pairs,
                                                      monkeypatch):
    created = []

    class Recording(OnnxRuntimeBackend):
        def __init__(self, *args, **kwargs):
            created.append(kwargs.get('allow_spinning', True))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(quantize_module, 'OnnxRuntimeBackend', Recording)
    image, label = camvid_pairs[0]
    compare_int8(tiny_model, int8_model[0], [image], [label], load_classes(), 1)
    assert created == [False, False]


def test_seg_tool_quantize_cpu_target_writes_model_int8_cpu(tiny_model, tmp_path, capsys):
    model = tmp_path / 'model.onnx'
    model.write_bytes(tiny_model.read_bytes())
    assert main(['quantize', str(model), '--target', 'cpu', '--calibration-images',
                 str(CAMVID_FIXTURES), '--split', 'val', '--count', '1']) == 0
    assert '41/42 Conv quantised' in capsys.readouterr().out
    assert OnnxRuntimeBackend(tmp_path / 'model_int8_cpu.onnx').info.num_classes == 11
