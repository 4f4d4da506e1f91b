"""Weight averaging: the running mean of snapshots and recomputed batch-norm statistics."""

import pytest
import torch
from torch import nn

from seg_node.training.averaging import accumulate, refresh_batch_norm


def _layer(weight: float) -> nn.Linear:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.fill_(-weight)
    return layer


def test_accumulate_gives_every_snapshot_the_same_weight():
    average = _layer(100.0)
    for count, weight in enumerate((1.0, 2.0, 6.0)):
        accumulate(average, _layer(weight), count)
    assert average.weight.tolist() == [[3.0, 3.0]]
    assert average.bias.tolist() == [-3.0]


def test_accumulate_leaves_batch_norm_statistics_alone():
    average, network = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    network.running_mean.fill_(5.0)
    with torch.no_grad():
        network.weight.fill_(3.0)
    accumulate(average, network, 1)
    assert average.weight.tolist() == [2.0, 2.0]
    assert average.running_mean.tolist() == [0.0, 0.0]


def test_refresh_measures_the_statistics_of_all_inputs_equally():
    network = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).eval()
    with torch.no_grad():
        network[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        network[0].bias.zero_()
    network[1].running_mean.fill_(9.0)
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, 3, 4, 5, generator=generator) * scale + shift
              for scale, shift in ((1.0, 0.0), (3.0, 2.0), (0.5, -1.0))]
    refresh_batch_norm(network, inputs)
    expected_mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs]).mean(dim=0)
    expected_var = torch.stack([x.var(dim=(0, 2, 3)) for x in inputs]).mean(dim=0)
    assert network[1].running_mean.tolist() == pytest.approx(expected_mean.tolist(), abs=1e-5)
    assert network[1].running_var.tolist() == pytest.approx(expected_var.tolist(), abs=1e-4)
    assert not network.training


def test_accumulate_counts_another_average_by_its_snapshots():
    average = _layer(2.0)
    accumulate(average, _layer(6.0), count=1, snapshots=3)
    assert average.weight.tolist() == [[5.0, 5.0]]
    accumulate(average, _layer(1.0), count=4, snapshots=1)
    assert average.weight.tolist() == [[pytest.approx(4.2)] * 2]
