"""``deformable``: a free-form deformable convolution block (DCN, Dai et al. 2017; DCNv2, Zhu et al.
2019, with ``modulated: true``), the adaptive block's structure with unconstrained offsets.

Where the adaptive conv predicts 6 numbers per pixel and branch (a 2x2 matrix and a translation)
and derives the 9 taps' offsets from them, this block predicts the 18 offsets themselves (and, when
modulated, 9 sampling weights). Not from the paper: an ablation beside ``adaptive`` and ``basic``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import DeformConv2d

from dekr.models.adaptive_conv import AdaptiveBackend
from dekr.models.offset_blocks.base import OffsetBlock


class DeformableBlock(OffsetBlock):
    """Deformable 3x3 conv + BN + identity + ReLU, ``groups`` branches at once.

    Shapes: x (N, G*c, H, W) -> (N, G*c, H, W), with G = ``groups`` and c = ``channels_per_group``.
    Per pixel and branch, ``offset_conv`` (a grouped 3x3 conv with bias) predicts the offsets
    (N, G*18, H, W), (dy, dx) per tap in input pixels (torchvision's layout), and, when
    ``modulated``, ``mask_conv`` predicts (N, G*9, H, W) logits whose sigmoid weighs each tap's
    sample. ``deform_conv`` (``torchvision.ops.DeformConv2d``, G groups, no bias) samples each branch
    with its own offsets (one offset group per branch) and convolves.

    Initialisation: the offset and mask convs are zero, here and after the official init (see
    :meth:`init_official_`), so a fresh block samples the regular grid: its conv is a plain 3x3
    conv (with ``deform_conv.weight``), scaled by sigmoid(0) = 0.5 when modulated -- the DCNv2
    paper's initialisation (offsets 0, modulation 0.5). ``deform_conv.weight`` keeps torchvision's
    kaiming-uniform init, as the adaptive block's deformable weight does (neither is an
    ``nn.Conv2d``), so the two blocks start alike for comparisons.

    ``backend`` is ignored: the sampling is always ``torchvision.ops.deform_conv2d`` (CPU and
    GPU; no ONNX export path).
    """

    def __init__(self, channels_per_group: int, groups: int = 1, dilation: int = 1,
                 backend: AdaptiveBackend = "grid_sample", modulated: bool = False) -> None:
        super().__init__(channels_per_group, groups, dilation, backend)
        channels = self.channels
        self.modulated = modulated
        # As DCN implementations do (mmcv's DeformConv2dPack), the predictors have the main conv's
        # kernel and dilation, so they see the neighbourhood the regular grid covers.
        same = {"padding": dilation, "dilation": dilation, "groups": groups}  # 3x3, "same" output size
        self.offset_conv = nn.Conv2d(channels, 18 * groups, 3, **same)
        self.mask_conv = nn.Conv2d(channels, 9 * groups, 3, **same) if modulated else None
        self.deform_conv = DeformConv2d(channels, channels, 3, bias=False, **same)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.zero_offset_predictors_()

    def forward(self, x: Tensor) -> Tensor:
        offset = self.offset_conv(x)
        mask = torch.sigmoid(self.mask_conv(x)) if self.mask_conv is not None else None
        return self.relu(self.bn(self.deform_conv(x, offset, mask)) + x)

    def init_official_(self) -> None:
        """Zero offset (and mask) predictors again, over the generic N(0, 0.001) of every conv."""
        self.zero_offset_predictors_()

    def zero_offset_predictors_(self) -> None:
        """Offset (and mask) convs, weight and bias 0: the block samples the regular grid (a plain
        3x3 conv, x 0.5 when modulated) and learns its offsets from there."""
        for conv in (self.offset_conv, self.mask_conv):
            if conv is not None:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, modulated={self.modulated}"
