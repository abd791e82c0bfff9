"""A user's own offset block, outside ``dekr``: what ``model.net.offset_block`` takes by class path
(``tests.models.user_offset_block.SeparableBlock``) in the tests of :mod:`dekr.models.offset_blocks`."""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from dekr.models.offset_blocks import OffsetBlock


class SeparableBlock(OffsetBlock):
    """Depthwise 3x3 conv-BN-ReLU, grouped 1x1 conv-BN, + identity, ReLU; (N, G*c, H, W) -> the same.

    Written the short way (the head's arguments passed through), with one option of its own
    (``expansion``) and its own official init (the last BN's scale 0: a fresh block is the identity).
    """

    def __init__(self, *args: Any, expansion: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        wide = self.channels * expansion
        self.depthwise = nn.Conv2d(self.channels, wide, 3, padding=self.dilation, dilation=self.dilation,
                                   groups=self.channels, bias=False)
        self.bn1 = nn.BatchNorm2d(wide)
        self.pointwise = nn.Conv2d(wide, self.channels, 1, groups=self.groups, bias=False)
        self.bn2 = nn.BatchNorm2d(self.channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.pointwise(self.relu(self.bn1(self.depthwise(x)))))
        return self.relu(out + x)

    def init_official_(self) -> None:
        nn.init.zeros_(self.bn2.weight)


class NotABlock(nn.Module):
    """A module that does not subclass OffsetBlock: refused by class path."""
