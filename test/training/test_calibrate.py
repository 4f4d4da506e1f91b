"""Per-class logit offsets: the fit on a hand-made sample, the checkpoint edit, the command."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CAMVID_FIXTURES
from seg_node.tools.cli.main import main as seg_tool
from seg_node.models.torch_backend import load_checkpoint, TorchBackend
from seg_node.models.architectures import build_model
from seg_node.training.calibrate import (fit_offsets, miou_with_offsets, PixelSample,
                                         write_offset_checkpoint)


def under_predicted_sample() -> PixelSample:
    """100 pixels of class 0 (p0 = 0.9) and 20 of class 1 that the network gives p1 = 0.4."""
    probabilities = np.concatenate([np.tile([0.9, 0.1], (100, 1)),
                                    np.tile([0.6, 0.4], (20, 1))]).astype(np.float32)
    labels = np.array([0] * 100 + [1] * 20, np.uint8)
    return PixelSample(np.log(probabilities), labels)


def test_offsets_recover_an_under_predicted_class():
    sample = under_predicted_sample()
    offsets, before, after = fit_offsets(sample)
    # Without offsets class 1 is never chosen: IoU 100/120 for class 0, 0 for class 1.
    assert before == pytest.approx((100 / 120 + 0.0) / 2)
    assert after == pytest.approx(1.0)
    # Class 1 wins where log(0.4) + o1 > log(0.6) + o0, and still loses where p1 = 0.1.
    assert np.log(1.5) < offsets[1] - offsets[0] < np.log(9.0)
    assert miou_with_offsets(sample, offsets) == pytest.approx(after)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    network = build_model('fast', 11)
    path = tmp_path / 'last.pt'
    torch.save({'model': network.state_dict(),
                'config': {'arch': 'fast', 'num_classes': 11, 'class_names': list('abcdefghijk'),
                           'mean': (0.4, 0.4, 0.4), 'std': (0.3, 0.3, 0.3)}}, path)
    return path


def test_offsets_are_folded_into_the_head_bias(checkpoint, tmp_path, camvid_rgb):
    offsets = np.zeros(11, np.float32)
    offsets[3] = 100.0
    write_offset_checkpoint(checkpoint, tmp_path / 'offset.pt', offsets)
    original, _ = load_checkpoint(checkpoint)
    shifted, config = load_checkpoint(tmp_path / 'offset.pt')
    np.testing.assert_allclose(
        (shifted.network.head.bias - original.network.head.bias).detach().numpy(), offsets)
    assert config['class_offsets'][3] == 100.0
    labels = TorchBackend(None, model=shifted).infer(camvid_rgb[:64, :96]).labels
    assert (labels == 3).all()


def test_command_fits_on_the_given_split_and_writes_a_checkpoint(checkpoint, tmp_path):
    report = tmp_path / 'offsets.json'
    output = tmp_path / 'calibrated.pt'
    assert seg_tool(['calibrate-bias', str(checkpoint), '--output', str(output),
                     '--data', str(CAMVID_FIXTURES), '--split', 'val', '--step', '16',
                     '--json', str(report)]) == 0
    payload = json.loads(report.read_text())
    assert payload['frames'] == 3 and payload['split'] == 'val'
    assert len(payload['offsets']) == 11
    assert payload['miou_after'] >= payload['miou_before']
    _, config = load_checkpoint(output)
    assert config['class_offsets'] == pytest.approx(list(payload['offsets'].values()))
