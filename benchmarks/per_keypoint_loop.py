"""The official DEKR offset head's structure, as a reference for tests and benchmarks: one Python
loop over the keypoints, each branch with torchvision's deformable convolution.

Our :class:`dekr.models.heads.OffsetHead` computes the K branches at once as grouped convolutions;
with the same weights (BN in eval mode) :func:`forward_per_keypoint` gives the same offsets, which
``tests/models/test_dekr.py`` checks and ``benchmarks/model.py`` times side by side.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d as tv_deform_conv2d

from dekr.models.adaptive_conv import affine_grid_offsets
from dekr.models.heads import OffsetHead
from dekr.models.offset_blocks.adaptive import AdaptiveBlock


def forward_per_keypoint(head: OffsetHead, features: Tensor) -> Tensor:
    """Features (N, C, H/4, W/4) -> offsets (N, 2K, H/4, W/4) through ``head``'s weights, one
    keypoint branch after another (the official loop). Needs the disentangled adaptive head."""
    if head.groups != head.num_keypoints or not all(isinstance(b, AdaptiveBlock) for b in head.blocks):
        raise ValueError("forward_per_keypoint needs the disentangled adaptive head")
    c = head.channels_per_keypoint
    x_all = head.transition(features)
    outputs = []
    for k in range(head.num_keypoints):
        ch = slice(k * c, (k + 1) * c)
        x = x_all[:, ch]
        for block in head.blocks:
            conv = block.adapt_conv
            m = nn.functional.conv2d(x, conv.transform_matrix_conv.weight[4 * k:4 * k + 4],
                                     conv.transform_matrix_conv.bias[4 * k:4 * k + 4], padding=1)
            t = nn.functional.conv2d(x, conv.translation_conv.weight[2 * k:2 * k + 2],
                                     conv.translation_conv.bias[2 * k:2 * k + 2], padding=1)
            y = tv_deform_conv2d(x, affine_grid_offsets(m, t), conv.weight[ch],
                                 padding=conv.dilation, dilation=conv.dilation)
            bn = block.bn
            y = nn.functional.batch_norm(y, bn.running_mean[ch], bn.running_var[ch], bn.weight[ch], bn.bias[ch],
                                         bn.training, bn.momentum, bn.eps)
            x = torch.relu(y + x)
        outputs.append(nn.functional.conv2d(x, head.final.weight[2 * k:2 * k + 2], head.final.bias[2 * k:2 * k + 2]))
    return torch.cat(outputs, dim=1)


def use_per_keypoint_loop(head: OffsetHead) -> None:
    """Make ``head`` run the official loop from now on (same weights): for timing the official structure."""
    head.forward = lambda features: forward_per_keypoint(head, features)  # type: ignore[method-assign]
