"""Weight averaging over training epochs (stochastic weight averaging, Izmailov et al. 2018).

The average of the weights a network passes through at a constant (or cycling) learning rate
lies nearer the centre of a wide low-loss region than any one of them, which tends to
generalise better than the last snapshot. The averaged weights define a new network whose
batch-norm statistics were never measured, so they are recomputed on training batches
before it is evaluated or saved. Same architecture, same exported graph, same speed.

Averages of runs that continued the same network from different data orders stay in one
low-loss region, so they can be pooled into the mean of all their snapshots
(``seg_tool pool-averages``), which no longer depends on one run's data order.
"""

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.swa_utils import update_bn


def accumulate(average: nn.Module, network: nn.Module, count: int, snapshots: int = 1) -> None:
    """Fold ``network``'s parameters into ``average``, the mean of ``count`` earlier snapshots.

    Afterwards every parameter of ``average`` is the equal-weight mean of
    ``count + snapshots`` snapshots. ``network`` is one snapshot (the network being trained)
    or, with ``snapshots`` > 1, itself the mean of that many (another run's average).
    Buffers (batch-norm statistics) are left alone: see :func:`refresh_batch_norm`.

    Args:
        average: a network of the same architecture holding the running mean.
        network: a snapshot, or the mean of ``snapshots`` of them.
        count: how many snapshots ``average`` holds already (0: it is overwritten).
        snapshots: how many snapshots ``network`` stands for.

    """
    with torch.no_grad():
        for mean, current in zip(average.parameters(), network.parameters(), strict=True):
            mean.lerp_(current.detach(), snapshots / (count + snapshots))


def refresh_batch_norm(network: nn.Module, inputs: Iterable[torch.Tensor]) -> None:
    """Recompute every batch-norm layer's running statistics of ``network`` from scratch.

    Args:
        network: the network (its train/eval mode is restored afterwards).
        inputs: (N, 3, H, W) float32 normalised network inputs, e.g. augmented training
            crops; each statistic becomes the equal-weight mean over all of them.

    """
    update_bn(inputs, network)
