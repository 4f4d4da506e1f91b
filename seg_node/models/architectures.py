"""Encoder-decoder segmentation networks built from one encoder / decoder / head split.

Every architecture maps a normalised (N, 3, H, W) float tensor, H and W multiples of 16, to
(N, K, H, W) class scores (logits). Softmax and argmax are added at export time
(:mod:`seg_node.models.deploy`), never inside the training graph.

Architectures:
    naive:   VGG-style conv-pool extractor (stride 16), per-pixel linear layer at 1/16,
             nearest upsampling of the scores to full size.
    decoder: the same extractor plus a mirrored decoder: x2 nearest upsampling followed by
             learned 3x3 convolutions per block, channels shrinking as resolution grows.
    segnet:  the same, but upsampling places values at the max-pooling switches of the
             matching encoder block (SegNet's pooling-index unpooling).
    fast:    the car's model: strided residual encoder with a dilated, globally pooled
             context bottleneck and a skip-connected decoder (nearest x2 + 3x3 convs).
    fast_wide: ``fast`` with 1.5x the channels at every stride (24-48-96-192).
    fast_deep: ``fast`` with twice the channels at strides 8 and 16 (128, 256) and one
             more residual block at stride 8: capacity where objects are recognised.
    fast_xl: ``fast_deep``'s blocks at 3x ``fast``'s channels (48-96-192-384), about 10x
             the compute: a capacity ceiling (and teacher) for GPU training, too slow for
             the car's CPU.
    fast_fine: ``fast_wide`` with a wider stride-2 stage (32 channels) and two residual
             blocks in it: more processing at the one stride where a 4-5 px pole is still
             two cells wide.
"""

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

OUTPUT_STRIDE = 16


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1) -> nn.Sequential:
    """Return conv (no bias) + batch norm + ReLU with 'same' padding."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                  bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def separable_conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """Return a depthwise 3x3 conv + batch norm, then a pointwise conv-bn-relu."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        conv_bn_relu(in_channels, out_channels, 1),
    )


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling of an (N, C, H, W) tensor."""
    return F.interpolate(x, scale_factor=2.0, mode='nearest')


def unpool2(values: torch.Tensor, pre_pool: torch.Tensor) -> torch.Tensor:
    """Max-unpool ``values`` to the switches of a 2x2 max pool over ``pre_pool``.

    Each value is written where the pooled window had its maximum and zeros elsewhere,
    as SegNet's index unpooling does. The switches are recovered by comparing the
    activation with its pooled maximum, which exports to ONNX operators TensorRT parses
    (ONNX MaxUnpool and MaxPool's index output are not); a window with tied maxima
    passes the value to every tied position.

    Args:
        values: (N, C, H/2, W/2) decoder features.
        pre_pool: (N, C, H, W) encoder activation that was max-pooled.

    """
    pooled = F.max_pool2d(pre_pool, 2)
    switches = (pre_pool == upsample2(pooled)).to(values.dtype)
    return upsample2(values) * switches


class VGGEncoder(nn.Module):
    """Four blocks of two 3x3 conv-bn-relu followed by a 2x2 max pool: output stride 16."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        """Build the blocks; ``widths`` are the output channels of blocks 1..4."""
        super().__init__()
        self.widths = widths
        channels = (3, *widths)
        self.blocks = nn.ModuleList(
            nn.Sequential(conv_bn_relu(channels[i], channels[i + 1]),
                          conv_bn_relu(channels[i + 1], channels[i + 1]))
            for i in range(len(widths)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[pre_pool_1, ..., pre_pool_4, pooled_4]``: strides 1, 2, 4, 8 and 16."""
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
            x = F.max_pool2d(x, 2)
        features.append(x)
        return features


class NaiveDecoder(nn.Module):
    """No decoder: the head classifies the stride-16 features directly."""

    def __init__(self, encoder_widths: tuple[int, ...]) -> None:
        """Keep the deepest width as the head's input width."""
        super().__init__()
        self.out_channels = encoder_widths[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Return the stride-16 features unchanged."""
        return features[-1]


class MirroredDecoder(nn.Module):
    """Mirror of the VGG encoder: per block, x2 upsampling then two 3x3 conv-bn-relu.

    With ``unpool=True`` the upsampling uses the encoder's pooling switches (SegNet);
    otherwise it is nearest-neighbour.
    """

    def __init__(self, encoder_widths: tuple[int, ...], unpool: bool = False) -> None:
        """Build one block per encoder block, channels shrinking toward full resolution."""
        super().__init__()
        self.unpool = unpool
        widths = tuple(reversed(encoder_widths))
        outs = (*widths[1:], widths[-1])
        self.blocks = nn.ModuleList(
            nn.Sequential(conv_bn_relu(c_in, c_in), conv_bn_relu(c_in, c_out))
            for c_in, c_out in zip(widths, outs, strict=True))
        self.out_channels = outs[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Decode ``VGGEncoder`` features back to full resolution."""
        x = features[-1]
        for block, pre_pool in zip(self.blocks, reversed(features[:-1]), strict=True):
            x = unpool2(x, pre_pool) if self.unpool else upsample2(x)
            x = block(x)
        return x


class ResidualBlock(nn.Module):
    """Bottleneck residual block: 1x1 reduce, dilated 3x3, 1x1 expand, identity shortcut."""

    def __init__(self, channels: int, dilation: int = 1, reduction: int = 2) -> None:
        """Build the block for ``channels`` in and out."""
        super().__init__()
        inner = channels // reduction
        self.body = nn.Sequential(
            conv_bn_relu(channels, inner, 1),
            conv_bn_relu(inner, inner, 3, dilation=dilation),
            nn.Conv2d(inner, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return relu(x + body(x))."""
        return F.relu(x + self.body(x))


class FastEncoder(nn.Module):
    """Strided-conv residual encoder; the stride-16 stage uses dilations for context."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128),
                 blocks: tuple[int, ...] = (0, 2, 3, 0),
                 context_dilations: tuple[int, ...] = (1, 2, 4, 8)) -> None:
        """Build four stages of stride 2 each, ``blocks[i]`` residual blocks per stage."""
        super().__init__()
        self.widths = widths
        stages = []
        in_channels = 3
        for width, count in zip(widths, blocks, strict=True):
            layers = [conv_bn_relu(in_channels, width, stride=2)]
            layers += [ResidualBlock(width) for _ in range(count)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        stages[-1].extend(ResidualBlock(widths[-1], d) for d in context_dilations)
        self.stages = nn.ModuleList(stages)
        self.global_context = conv_bn_relu(widths[-1], widths[-1], 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return stage outputs at strides 2, 4, 8, 16 (the last with global context added)."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        pooled = x.mean(dim=(2, 3), keepdim=True)
        features[-1] = x + self.global_context(pooled)
        return features


class SkipDecoder(nn.Module):
    """Per stride: nearest x2 upsampling, add the projected skip, separable 3x3 refinement."""

    def __init__(self, encoder_widths: tuple[int, ...]) -> None:
        """Build one block per skip connection; output is at stride 2."""
        super().__init__()
        widths = tuple(reversed(encoder_widths))
        self.projections = nn.ModuleList(
            conv_bn_relu(c_in, c_out, 1) for c_in, c_out in zip(widths, widths[1:], strict=False))
        self.refine = nn.ModuleList(separable_conv_bn_relu(c, c) for c in widths[1:])
        self.out_channels = widths[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Decode ``FastEncoder`` features to stride 2."""
        x = features[-1]
        for project, refine, skip in zip(self.projections, self.refine,
                                         reversed(features[:-1]), strict=True):
            x = refine(upsample2(project(x)) + skip)
        return x


class SegmentationModel(nn.Module):
    """Encoder, decoder and a per-pixel linear head, upsampled to the input size."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, num_classes: int,
                 head_upsampling: str = 'nearest') -> None:
        """Compose the parts; the head is a 1x1 convolution to ``num_classes`` scores."""
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = nn.Conv2d(decoder.out_channels, num_classes, 1)
        self.head_upsampling = head_upsampling

    def scores_with_context(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the head's (N, K, H/s, W/s) logits and the encoder's deepest features.

        s is the decoder's output stride; the features are (N, C, H/16, W/16).
        """
        features = self.encoder(x)
        return self.head(self.decoder(features)), features[-1]

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Return the head's (N, K, H/s, W/s) logits at the decoder's output stride s."""
        return self.scores_with_context(x)[0]

    def upsample(self, scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Upsample (N, C, h, w) head-resolution maps by the integer factor to ``size``."""
        if scores.shape[-1] == size[-1]:
            return scores
        scale = float(size[-1] // scores.shape[-1])
        return F.interpolate(scores, scale_factor=scale, mode=self.head_upsampling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, 3, H, W) normalised images to (N, K, H, W) logits; H, W multiples of 16."""
        return self.upsample(self.scores(x), x.shape[-2:])

    def forward_with_context(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the (N, K, H, W) logits and the encoder's deepest (N, C, H/16, W/16) features.

        Training uses the deepest features for an auxiliary (deep supervision) head.
        """
        scores, context = self.scores_with_context(x)
        return self.upsample(scores, x.shape[-2:]), context


def _naive(num_classes: int) -> SegmentationModel:
    encoder = VGGEncoder()
    return SegmentationModel(encoder, NaiveDecoder(encoder.widths), num_classes)


def _decoder(num_classes: int) -> SegmentationModel:
    encoder = VGGEncoder()
    return SegmentationModel(encoder, MirroredDecoder(encoder.widths), num_classes)


def _segnet(num_classes: int) -> SegmentationModel:
    encoder = VGGEncoder()
    return SegmentationModel(encoder, MirroredDecoder(encoder.widths, unpool=True),
                             num_classes)


def _fast(num_classes: int, widths: tuple[int, ...] = (16, 32, 64, 128),
          blocks: tuple[int, ...] = (0, 2, 3, 0)) -> SegmentationModel:
    encoder = FastEncoder(widths, blocks)
    return SegmentationModel(encoder, SkipDecoder(encoder.widths), num_classes,
                             head_upsampling='bilinear')


ARCHITECTURES: dict[str, Callable[[int], SegmentationModel]] = {
    'naive': _naive,
    'decoder': _decoder,
    'segnet': _segnet,
    'fast': _fast,
    'fast_wide': partial(_fast, widths=(24, 48, 96, 192)),
    'fast_deep': partial(_fast, widths=(16, 32, 128, 256), blocks=(0, 2, 4, 0)),
    'fast_xl': partial(_fast, widths=(48, 96, 192, 384), blocks=(0, 2, 4, 0)),
    'fast_fine': partial(_fast, widths=(32, 48, 96, 192), blocks=(2, 2, 3, 0)),
}


def build_model(arch: str, num_classes: int) -> SegmentationModel:
    """Return a freshly initialised model of architecture ``arch``.

    Raises:
        ValueError: ``arch`` is not one of :data:`ARCHITECTURES`.

    """
    try:
        factory = ARCHITECTURES[arch]
    except KeyError as err:
        raise ValueError(f'unknown architecture {arch!r}; choose one of '
                         f'{", ".join(ARCHITECTURES)}') from err
    return factory(num_classes)
