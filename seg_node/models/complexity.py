"""Parameter and multiply-accumulate counts of a network, for the architecture table."""

import torch
from torch import nn

from seg_node.models.architectures import OUTPUT_STRIDE


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def count_macs(model: nn.Module, input_shape: tuple[int, int, int, int]) -> int:
    """Count the multiply-accumulates of every convolution for one forward pass.

    Convolutions dominate these networks; element-wise ops, pooling and upsampling are
    left out. GFLOPs are conventionally reported as ``2 * MACs / 1e9``.

    Args:
        model: the network (eval mode is used for the pass).
        input_shape: (N, 3, H, W) of the normalised input.
    """
    total = 0

    def hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * kernel * module.in_channels // module.groups

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d)]
    training = model.training
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(input_shape))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return total


def gflops_at(model: nn.Module, height: int, width: int) -> float:
    """Return ``2 * MACs / 1e9`` for one (H, W) frame, padded to the network stride first.

    The deploy graph pads every frame to a multiple of the output stride (360 -> 368), so
    that is the size the convolutions really run at.
    """
    padded = [-(-side // OUTPUT_STRIDE) * OUTPUT_STRIDE for side in (height, width)]
    return 2 * count_macs(model, (1, 3, *padded)) / 1e9
