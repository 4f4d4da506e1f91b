"""The deployable graph: uint8 camera images in, labels and confidences out.

This wrapper is what ``seg_tool export`` writes to ONNX and what the torch backend runs, so
normalisation, padding to the network stride, softmax, argmax and the max confidence are
part of the model and never reimplemented by a caller.

The ONNX contract (names, dtypes, shapes) is defined in :mod:`seg_node.core.inference.contract`.
UINT8 appears only at the graph's edges, as TensorRT requires: the image is cast to float
before anything else reads it, and the labels are cropped as int64 and cast to uint8 last
(:mod:`seg_node.models.deploy_graph` checks the exported graph).
"""

import torch
import torch.nn.functional as F
from torch import nn

from seg_node.models.architectures import OUTPUT_STRIDE


class DeployModel(nn.Module):
    """Wrap a logits network with the contract's pre- and post-processing."""

    def __init__(self, network: nn.Module, mean: tuple[float, float, float],
                 std: tuple[float, float, float]) -> None:
        """Store the network and the per-channel RGB mean/std (in 0..1 units)."""
        super().__init__()
        self.network = network
        scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, 3, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1)
        self.register_buffer('scale', scale)
        self.register_buffer('shift', shift)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """Turn (N, H, W, 3) uint8 RGB into the network's (N, 3, H, W) float input."""
        return image.float().permute(0, 3, 1, 2) * self.scale + self.shift

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segment (N, H, W, 3) uint8 RGB images; see the module docstring for outputs."""
        x = self.normalise(image)
        height, width = x.shape[-2], x.shape[-1]
        pad_bottom = (OUTPUT_STRIDE - height % OUTPUT_STRIDE) % OUTPUT_STRIDE
        pad_right = (OUTPUT_STRIDE - width % OUTPUT_STRIDE) % OUTPUT_STRIDE
        x = F.pad(x, (0, pad_right, 0, pad_bottom))
        scores = self.network.scores(x)
        # Softmax at the head's resolution, spelled out as element-wise ops and channel
        # reductions (ONNX Runtime's Softmax kernel on a non-last axis is ~20x slower), then
        # the probabilities are upsampled like the training logits. Labels and confidence
        # are the argmax and max of the padded full-size probabilities, cropped afterwards:
        # so they never depend on the K-channel crop, which a runtime can then skip when
        # `probabilities` is not asked for.
        exponentials = torch.exp(scores - scores.amax(dim=1, keepdim=True))
        low_res = exponentials / exponentials.sum(dim=1, keepdim=True)
        padded = self.network.upsample(low_res, x.shape[-2:])
        confidence, labels = padded.max(dim=1)
        return (labels[:, :height, :width].to(torch.uint8), confidence[:, :height, :width],
                padded[:, :, :height, :width])
