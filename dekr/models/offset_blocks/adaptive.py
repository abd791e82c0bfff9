"""``adaptive`` (official): DEKR's adaptive-convolution block."""
from __future__ import annotations

from torch import Tensor, nn

from dekr.models.adaptive_conv import AdaptiveBackend, AdaptiveConv2d
from dekr.models.offset_blocks.base import OffsetBlock


class AdaptiveBlock(OffsetBlock):
    """Adaptive conv + BN + identity + ReLU (official ``AdaptBlock``), ``groups`` branches at once.

    Shapes: (N, groups*channels_per_group, H, W) -> the same. ``backend``: the adaptive conv's
    (``grid_sample`` or ``torchvision``, see :class:`~dekr.models.adaptive_conv.AdaptiveConv2d`).
    """

    def __init__(self, channels_per_group: int, groups: int = 1, dilation: int = 1,
                 backend: AdaptiveBackend = "grid_sample") -> None:
        super().__init__(channels_per_group, groups, dilation, backend)
        self.adapt_conv = AdaptiveConv2d(channels_per_group, channels_per_group, groups, dilation, backend)
        self.bn = nn.BatchNorm2d(self.channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.adapt_conv(x)) + x)

    def init_official_(self) -> None:
        """The official ``init_weights``' second loop: the adaptive conv's ``transform_matrix_conv``
        and ``translation_conv``, weight and bias 0.

        (The official loop tests ``hasattr(block, 'bias')`` on the block, which is False, so it
        zeroes only their weights; its first loop, like our generic one, has already zeroed their
        biases.) The deformable weight of :class:`~dekr.models.adaptive_conv.AdaptiveConv2d` is not
        an ``nn.Conv2d`` (officially a ``torchvision.ops.DeformConv2d``), so the generic N(0, 0.001)
        never reaches it: it keeps torchvision's kaiming-uniform init.

        Note what the zero transform does: the predicted matrix M is 0 (not the identity), so the
        offsets ``M @ G - G + t`` are ``-G`` and all 9 taps sample the centre pixel. A fresh adaptive
        conv is therefore a 1x1 conv whose weight is the sum of its 3x3 kernel's taps, not a 3x3 conv;
        the offsets learn from there (bilinear sampling has gradients with respect to them).
        """
        for conv in (self.adapt_conv.transform_matrix_conv, self.adapt_conv.translation_conv):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
