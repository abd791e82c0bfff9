"""DEKR heads: the heatmap head and the disentangled offset (keypoint regression) head."""
from __future__ import annotations

from torch import Tensor, nn

from dekr.models.adaptive_conv import AdaptiveBackend
from dekr.models.offset_blocks import OffsetBlockOption, resolve_offset_block
from dekr.models.offset_blocks.basic import BasicBlock


def conv_bn_relu_1x1(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (no bias) + BN + ReLU: the official ``transition_*`` layers."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
    )


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
    channels, each with ``num_blocks`` offset blocks and a 1x1 conv to (x, y). The K branches are
    computed together as grouped convolutions (``groups=K``), which is numerically the official
    per-keypoint loop (``benchmarks/per_keypoint_loop.py``).
    Not disentangled (ablation): one shared branch of K*c channels regresses all 2K offsets.

    ``block`` names the blocks' class (``adaptive``, official; ``basic``; ``deformable``; a class
    path; or ``{class_path, init_args}``, see :mod:`dekr.models.offset_blocks`); each block is
    ``cls(c, K, dilation=dilation, backend=backend, **init_args)`` (shared: ``cls(K*c, 1, ...)``).
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        channels_per_keypoint: int = 15,
        num_blocks: int = 2,
        block: OffsetBlockOption = "adaptive",
        disentangled: bool = True,
        dilation: int = 1,
        backend: AdaptiveBackend = "grid_sample",
    ) -> None:
        super().__init__()
        block_class, init_args = resolve_offset_block(block)
        self.num_keypoints = num_keypoints
        self.channels_per_keypoint = channels_per_keypoint
        self.groups = num_keypoints if disentangled else 1
        total = num_keypoints * channels_per_keypoint
        per_group = total // self.groups
        self.transition = conv_bn_relu_1x1(in_channels, total)
        self.blocks = nn.Sequential(*(block_class(per_group, self.groups, dilation=dilation, backend=backend,
                                                  **init_args) for _ in range(num_blocks)))
        self.final = nn.Conv2d(total, 2 * num_keypoints, 1, groups=self.groups)

    def forward(self, features: Tensor) -> Tensor:
        x = self.transition(features)
        # Block by block rather than self.blocks(x): a module call holds its argument until it
        # returns, which would keep the transition's output alive through every block (in
        # evaluation a quarter of the head's peak memory).
        for block in self.blocks:
            x = block(x)
        return self.final(x)
