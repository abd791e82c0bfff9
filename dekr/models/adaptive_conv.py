"""Adaptive convolution (DEKR): a 3x3 deformable convolution whose sampling grid is an affine
transform of the regular grid, predicted per pixel.

Three layers, in the torchvision ``ops`` manner:

* :func:`deform_conv2d_grid_sample` -- a pure-PyTorch grouped deformable 3x3 convolution with
  torchvision's ``deform_conv2d`` argument and offset conventions (differentiable, CPU/GPU,
  exports to ONNX through ``GridSample``). One call serves all groups at once, so DEKR's K
  per-keypoint branches run as one batched computation instead of a Python loop.
* :func:`affine_grid_offsets` -- turns the per-pixel 2x2 matrix and translation into the 18
  offsets of each 3x3 kernel.
* :class:`AdaptiveConv2d` -- the learnable module: predicts matrix and translation with 3x3
  convs and applies the deformable conv; ``groups`` independent branches side by side.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d as tv_deform_conv2d

AdaptiveBackend = Literal["grid_sample", "torchvision"]

# Regular 3x3 grid, row-major taps. Row 0 is the y displacement, row 1 the x displacement: the
# official DEKR ``regular_matrix`` buffer, so the 2x2 matrix acts on (y, x).
REGULAR_GRID = torch.tensor(
    [[-1, -1, -1, 0, 0, 0, 1, 1, 1], [-1, 0, 1, -1, 0, 1, -1, 0, 1]], dtype=torch.float32
)


def affine_grid_offsets(matrix: Tensor, translation: Tensor, groups: int = 1) -> Tensor:
    """Deformable-conv offsets ``M @ G - G + t`` for a 3x3 kernel.

    Args:
        matrix: (N, 4*groups, H, W); per group the row-major 2x2 matrix acting on (y, x).
        translation: (N, 2*groups, H, W); per group (ty, tx), added to every tap.
        groups: number of independent branches.

    Returns:
        (N, 18*groups, H, W) offsets laid out as (dy, dx) per tap, torchvision's convention.
    """
    n, _, h, w = matrix.shape
    grid = REGULAR_GRID.to(device=matrix.device, dtype=matrix.dtype)  # (2, 9)
    m = matrix.reshape(n, groups, 2, 2, h, w)
    # (M @ G)[i, t] = sum_j M[i, j] G[j, t]; i indexes (y, x) of the displaced tap.
    displaced = torch.einsum("ngijhw,jt->ngtihw", m, grid)  # (N, G, 9, 2, H, W)
    offsets = displaced - grid.t()[None, None, :, :, None, None]
    offsets = offsets + translation.reshape(n, groups, 1, 2, h, w)
    return offsets.reshape(n, groups * 18, h, w)


def deform_conv2d_grid_sample(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    dilation: int = 1,
) -> Tensor:
    """Grouped deformable 3x3 convolution, stride 1, "same" padding (= dilation), in pure PyTorch.

    Same semantics as ``torchvision.ops.deform_conv2d(input, offset, weight, bias,
    padding=dilation, dilation=dilation)`` with as many offset groups as weight groups: each tap
    samples bilinearly at ``(y + (ky-1)*dilation + dy, x + (kx-1)*dilation + dx)``; samples outside
    the map read zeros (per bilinear corner, exactly like torchvision's kernel).

    Args:
        input: (N, G*Cin, H, W).
        offset: (N, G*18, H, W), (dy, dx) per tap per group, in input pixels.
        weight: (G*Cout, Cin, 3, 3).
        bias: optional (G*Cout,).
        dilation: spacing of the regular grid.

    Returns:
        (N, G*Cout, H, W).
    """
    n, c_total, h, w = input.shape
    c_out_total, c_in, kh, kw = weight.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"deform_conv2d_grid_sample supports 3x3 kernels only, got {kh}x{kw}")
    if c_total % c_in:
        raise ValueError(f"input channels {c_total} are not a multiple of weight's {c_in} per group")
    groups = c_total // c_in
    if offset.shape[1] != 18 * groups:
        raise ValueError(f"offset has {offset.shape[1]} channels, expected {18 * groups} for {groups} groups")
    c_out = c_out_total // groups

    # Absolute sampling positions in input pixels, (N, G, 9, H, W) each.
    off = offset.reshape(n, groups, 9, 2, h, w)
    tap_y = (REGULAR_GRID[0] * dilation).to(input)[None, None, :, None, None]
    tap_x = (REGULAR_GRID[1] * dilation).to(input)[None, None, :, None, None]
    base_y = torch.arange(h, device=input.device, dtype=input.dtype)[:, None]
    base_x = torch.arange(w, device=input.device, dtype=input.dtype)[None, :]
    pos_y = base_y + tap_y + off[:, :, :, 0]
    pos_x = base_x + tap_x + off[:, :, :, 1]
    # grid_sample's align_corners=False maps pixel p to (2p + 1) / size - 1.
    grid = torch.stack(((2 * pos_x + 1) / w - 1, (2 * pos_y + 1) / h - 1), dim=-1)  # (N, G, 9, H, W, 2)
    grid = grid.reshape(n * groups, 9 * h, w, 2)

    sampled = F.grid_sample(
        input.reshape(n * groups, c_in, h, w), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (N*G, Cin, 9*H, W)
    columns = sampled.reshape(n, groups, c_in * 9, h * w)
    # Weight taps are (Cin, 3, 3) row-major, matching the (Cin, tap) order of `columns`.
    kernel = weight.reshape(groups, c_out, c_in * 9)
    out = torch.matmul(kernel, columns).reshape(n, groups * c_out, h, w)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


class AdaptiveConv2d(nn.Module):
    """``groups`` independent adaptive 3x3 convolutions (no bias), side by side in one module.

    Per group: a 3x3 conv (with bias) predicts a 2x2 matrix, another a translation; they turn
    the regular grid into the sampling grid of a deformable 3x3 conv. With ``groups=K`` this is
    DEKR's K disentangled keypoint branches computed at once.

    Shapes: input (N, groups*in_per_group, H, W) -> output (N, groups*out_per_group, H, W).
    """

    def __init__(
        self,
        in_per_group: int,
        out_per_group: int,
        groups: int = 1,
        dilation: int = 1,
        backend: AdaptiveBackend = "grid_sample",
    ) -> None:
        super().__init__()
        if backend not in ("grid_sample", "torchvision"):
            raise ValueError(f"adaptive_backend must be 'grid_sample' or 'torchvision', got {backend!r}")
        self.groups = groups
        self.dilation = dilation
        self.backend = backend
        c_in = in_per_group * groups
        self.transform_matrix_conv = nn.Conv2d(c_in, 4 * groups, 3, padding=1, groups=groups, bias=True)
        self.translation_conv = nn.Conv2d(c_in, 2 * groups, 3, padding=1, groups=groups, bias=True)
        # Stored like a grouped nn.Conv2d weight: (groups*out, in, 3, 3), no bias (as official).
        self.weight = nn.Parameter(torch.empty(out_per_group * groups, in_per_group, 3, 3))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The deformable weight's init: torchvision's ``DeformConv2d.reset_parameters``.

        The official ``adapt_conv`` is a ``torchvision.ops.DeformConv2d``, not an ``nn.Conv2d``,
        so the official ``init_weights`` (N(0, 0.001) for every ``nn.Conv2d``) never reaches it:
        it keeps torchvision's ``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(fan_in),
        1/sqrt(fan_in)) with fan_in = in_per_group * 9 -- the same fan-in as the official
        per-keypoint ``DeformConv2d(c, c, 3)``, since each of our groups is one keypoint branch.
        The two offset-predicting convs keep ``nn.Conv2d``'s default here;
        :func:`dekr.models.dekr.init_official_` zeroes them.
        """
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def offsets(self, x: Tensor) -> Tensor:
        """(N, groups*18, H, W) sampling offsets predicted from ``x``."""
        return affine_grid_offsets(self.transform_matrix_conv(x), self.translation_conv(x), self.groups)

    def forward(self, x: Tensor) -> Tensor:
        offset = self.offsets(x)
        if self.backend == "torchvision":
            return tv_deform_conv2d(x, offset, self.weight, padding=self.dilation, dilation=self.dilation)
        return deform_conv2d_grid_sample(x, offset, self.weight, dilation=self.dilation)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, dilation={self.dilation}, backend={self.backend!r}"
