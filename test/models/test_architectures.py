"""Every architecture passes one test class: shapes, stride, export contract, TensorRT rules."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seg_node.models.deploy_graph import operator_report, uint8_edge_violation
from seg_node.core.inference.onnxruntime import OnnxRuntimeBackend
from seg_node.models.torch_backend import TorchBackend
from seg_node.models import ARCHITECTURE_NAMES
from seg_node.models.architectures import ARCHITECTURES, build_model, OUTPUT_STRIDE, unpool2
from seg_node.models.deploy import DeployModel
from seg_node.training.export import export_onnx, verify_export

NUM_CLASSES = 11


@pytest.fixture(scope='module', params=sorted(ARCHITECTURES))
def network(request):
    torch.manual_seed(0)
    return request.param, build_model(request.param, NUM_CLASSES).eval()


class TestArchitecture:
    def test_logits_have_input_size_and_classes(self, network):
        _, model = network
        logits = model(torch.randn(2, 3, 64, 96))
        assert logits.shape == (2, NUM_CLASSES, 64, 96)

    def test_encoder_downsamples_sixteen_times(self, network):
        _, model = network
        deepest = model.encoder(torch.randn(1, 3, 64, 96))[-1]
        assert deepest.shape[-2:] == (64 // OUTPUT_STRIDE, 96 // OUTPUT_STRIDE)

    def test_export_follows_the_contract_at_odd_sizes(self, network, tmp_path, camvid_rgb):
        name, model = network
        deploy = DeployModel(model, (0.4, 0.4, 0.4), (0.3, 0.3, 0.3)).eval()
        path = export_onnx(deploy, tmp_path / f'{name}.onnx', [str(i) for i in range(11)],
                           (360, 480), name)
        backend = OnnxRuntimeBackend(path)
        assert backend.info.inference_size == (360, 480) and backend.info.arch == name
        odd = np.ascontiguousarray(camvid_rgb[:361 - 2, :479])
        result = backend.infer(odd, probabilities=True)
        assert result.labels.shape == odd.shape[:2] and result.labels.dtype == np.uint8
        assert result.confidence.dtype == np.float32
        assert result.probabilities.shape == (NUM_CLASSES, *odd.shape[:2])
        np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-5)
        np.testing.assert_allclose(result.probabilities.max(axis=0), result.confidence,
                                   atol=1e-6)
        batch = np.stack([camvid_rgb[:33, :45]] * 2)
        outputs = backend.session.run(None, {'image': batch})
        assert [o.shape for o in outputs] == [(2, 33, 45), (2, 33, 45), (2, 11, 33, 45)]
        report = verify_export(path, TorchBackend(None, model=deploy), [camvid_rgb])
        assert report.label_agreement >= 0.999 and report.frames == 1
        assert report.unsupported == [] and report.uint8_violation is None
        assert report.problem() is None
        assert operator_report(path)[1] == [] and uint8_edge_violation(path) is None


def test_cli_names_every_architecture():
    assert ARCHITECTURE_NAMES == tuple(ARCHITECTURES)


def test_segnet_unpooling_matches_index_unpooling_without_ties():
    torch.manual_seed(0)
    activation = torch.randn(2, 4, 8, 12)
    pooled, indices = F.max_pool2d(activation, 2, return_indices=True)
    values = torch.randn_like(pooled)
    expected = F.max_unpool2d(values, indices, 2, output_size=activation.shape[-2:])
    torch.testing.assert_close(unpool2(values, activation), expected)


def test_unknown_architecture_names_the_choices():
    with pytest.raises(ValueError, match='naive, decoder, segnet, fast'):
        build_model('unet', NUM_CLASSES)


def test_macs_of_a_single_convolution_are_counted_by_hand():
    from seg_node.models.complexity import count_macs, count_parameters
    layer = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(layer, (1, 3, 10, 12)) == 8 * 10 * 12 * 3 * 9
    depthwise = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_macs(depthwise, (1, 8, 4, 4)) == 8 * 4 * 4 * 9
    assert count_parameters(depthwise) == 8 * 9 + 8


def test_gflops_are_counted_at_the_padded_size_the_graph_runs():
    from seg_node.models.complexity import count_macs, gflops_at
    layer = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert gflops_at(layer, 360, 479) == 2 * count_macs(layer, (1, 3, 368, 480)) / 1e9
    assert gflops_at(layer, 368, 480) == 2 * 8 * 368 * 480 * 27 / 1e9
