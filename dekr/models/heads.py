"""DEKR heads: the heatmap head and the disentangled offset (keypoint regression) head."""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from dekr.models.adaptive_conv import AdaptiveBackend, AdaptiveConv2d

OffsetBlockType = Literal["adaptive", "basic"]


def conv_bn_relu_1x1(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (no bias) + BN + ReLU: the official ``transition_*`` layers."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
    )


class BasicBlock(nn.Module):
    """ResNet basic block (3x3-BN-ReLU-3x3-BN + identity, ReLU), optionally ``groups`` side by side."""

    def __init__(self, channels: int, groups: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class AdaptiveBlock(nn.Module):
    """Adaptive conv + BN + identity + ReLU (official ``AdaptBlock``), ``groups`` branches at once."""

    def __init__(self, channels_per_group: int, groups: int = 1, dilation: int = 1,
                 backend: AdaptiveBackend = "grid_sample") -> None:
        super().__init__()
        self.adapt_conv = AdaptiveConv2d(channels_per_group, channels_per_group, groups, dilation, backend)
        self.bn = nn.BatchNorm2d(channels_per_group * groups)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.adapt_conv(x)) + x)


class HeatmapHead(nn.Module):
    """Features (N, C, H/4, W/4) -> heatmaps (N, K+1, H/4, W/4): K keypoints, then the center."""

    def __init__(self, in_channels: int, channels: int, num_keypoints: int) -> None:
        super().__init__()
        self.transition = conv_bn_relu_1x1(in_channels, channels)
        self.block = BasicBlock(channels)
        self.final = nn.Conv2d(channels, num_keypoints + 1, 1)

    def forward(self, features: Tensor) -> Tensor:
        return self.final(self.block(self.transition(features)))


class OffsetHead(nn.Module):
    """Features (N, C, H/4, W/4) -> offsets (N, 2K, H/4, W/4), (x, y) per keypoint.

    Disentangled (official): a 1x1 transition to K*c channels, split into K branches of c
    channels, each with ``num_blocks`` adaptive (or plain "basic") blocks and a 1x1 conv to
    (x, y). The K branches are computed together as grouped convolutions (``groups=K``), which
    is numerically the official per-keypoint loop (``benchmarks/per_keypoint_loop.py``).
    Not disentangled (ablation): one shared branch of K*c channels regresses all 2K offsets.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        channels_per_keypoint: int = 15,
        num_blocks: int = 2,
        block: OffsetBlockType = "adaptive",
        disentangled: bool = True,
        dilation: int = 1,
        backend: AdaptiveBackend = "grid_sample",
    ) -> None:
        super().__init__()
        if block not in ("adaptive", "basic"):
            raise ValueError(f"offset_block must be 'adaptive' or 'basic', got {block!r}")
        self.num_keypoints = num_keypoints
        self.channels_per_keypoint = channels_per_keypoint
        self.groups = num_keypoints if disentangled else 1
        total = num_keypoints * channels_per_keypoint
        per_group = total // self.groups
        self.transition = conv_bn_relu_1x1(in_channels, total)
        if block == "adaptive":
            blocks = [AdaptiveBlock(per_group, self.groups, dilation, backend) for _ in range(num_blocks)]
        else:
            blocks = [BasicBlock(total, self.groups, dilation) for _ in range(num_blocks)]
        self.blocks = nn.Sequential(*blocks)
        self.final = nn.Conv2d(total, 2 * num_keypoints, 1, groups=self.groups)

    def forward(self, features: Tensor) -> Tensor:
        x = self.transition(features)
        # Block by block rather than self.blocks(x): a module call holds its argument until it
        # returns, which would keep the transition's output alive through every block (in
        # evaluation a quarter of the head's peak memory).
        for block in self.blocks:
            x = block(x)
        return self.final(x)
