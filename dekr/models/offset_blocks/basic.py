"""``basic``: the ResNet basic block, the paper's plain-convolution ablation of the adaptive block
(and the heatmap head's block)."""
from __future__ import annotations

from torch import Tensor, nn

from dekr.models.adaptive_conv import AdaptiveBackend
from dekr.models.offset_blocks.base import OffsetBlock


class BasicBlock(OffsetBlock):
    """3x3 conv-BN-ReLU-3x3 conv-BN + identity, ReLU; ``groups`` branches side by side.

    Shapes: (N, groups*channels_per_group, H, W) -> the same. ``backend`` is ignored (no sampling).
    """

    def __init__(self, channels_per_group: int, groups: int = 1, dilation: int = 1,
                 backend: AdaptiveBackend = "grid_sample") -> None:
        super().__init__(channels_per_group, groups, dilation, backend)
        channels = self.channels
        same = {"padding": dilation, "dilation": dilation, "groups": groups}  # 3x3, "same" output size
        self.conv1 = nn.Conv2d(channels, channels, 3, bias=False, **same)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, bias=False, **same)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)
