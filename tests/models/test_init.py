"""Initialisation: the official ``init_weights`` by default, the framework defaults on request, and
ImageNet weights loaded after the initialisation so that it cannot overwrite them."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import ops

from dekr.models.adaptive_conv import AdaptiveConv2d
from dekr.models.backbone import HRNetBackbone
from dekr.models.dekr import DEKRNet, DEKRNetConfig

# Official K=17 offset head (15 channels per keypoint, 2 adaptive blocks), small backbone.
SMALL = {"backbone": "hrnet_w18_small", "heatmap_channels": 16}


@pytest.fixture(scope="module")
def fresh_net() -> DEKRNet:
    torch.manual_seed(0)
    return DEKRNet(DEKRNetConfig(**SMALL))


def adaptive_convs(net: nn.Module) -> list[AdaptiveConv2d]:
    return [m for m in net.modules() if isinstance(m, AdaptiveConv2d)]


def offset_predictors(net: nn.Module) -> set[int]:
    return {id(c) for a in adaptive_convs(net) for c in (a.transform_matrix_conv, a.translation_conv)}


def test_official_init_draws_convs_from_normal_0_001(fresh_net: DEKRNet) -> None:
    zeroed = offset_predictors(fresh_net)
    for part in (fresh_net.heatmap_head, fresh_net.offset_head, fresh_net.backbone):
        convs = [m for m in part.modules() if isinstance(m, nn.Conv2d) and id(m) not in zeroed]
        weights = torch.cat([m.weight.detach().flatten() for m in convs])
        assert abs(weights.std().item() - 0.001) < 0.00005, type(part).__name__
        assert abs(weights.mean().item()) < 0.00005, type(part).__name__
        for m in convs:
            assert m.bias is None or torch.count_nonzero(m.bias) == 0
    assert fresh_net.heatmap_head.final.bias is not None  # the biased head convs are covered


def test_official_init_batchnorm_ones_and_zeros(fresh_net: DEKRNet) -> None:
    norms = [m for m in fresh_net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) > 50  # backbone and heads
    for m in norms:
        assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_official_init_zeroes_transform_and_translation_convs(fresh_net: DEKRNet) -> None:
    convs = adaptive_convs(fresh_net)
    assert len(convs) == 2  # the official 2 adaptive blocks, all 17 keypoints in each
    for a in convs:
        for conv in (a.transform_matrix_conv, a.translation_conv):
            assert torch.count_nonzero(conv.weight) == 0 and torch.count_nonzero(conv.bias) == 0


def test_adaptive_weight_keeps_torchvision_deformconv_init(fresh_net: DEKRNet) -> None:
    # The official adapt_conv is torchvision's DeformConv2d(15, 15, 3): no nn.Conv2d, so
    # init_weights leaves torchvision's kaiming_uniform_(a=sqrt(5)): U(-b, b), b = 1/sqrt(15*9).
    reference = ops.DeformConv2d(15, 15, 3, padding=1, bias=False).weight
    bound = 1 / math.sqrt(15 * 9)
    assert reference.abs().max() <= bound
    for a in adaptive_convs(fresh_net):
        w = a.weight.detach()
        assert w.shape == (17 * 15, 15, 3, 3)
        assert w.abs().max() <= bound and w.abs().max() > 0.98 * bound
        assert abs(w.std().item() - bound / math.sqrt(3)) < 0.03 * bound  # std of U(-b, b)


@pytest.mark.parametrize("backend", ["grid_sample", "torchvision"])
def test_fresh_adaptive_conv_is_the_official_centre_sampling_conv(backend: str) -> None:
    """Zero transform convs predict M = 0 (not the identity): offsets M G - G + t = -G move all
    nine taps onto the centre pixel, so the official block starts as a 1x1 conv with the summed
    3x3 kernel, not as a 3x3 conv. Checked against the official forward, transcribed."""
    torch.manual_seed(1)
    net = DEKRNet(DEKRNetConfig(**SMALL, num_keypoints=3, offset_channels_per_keypoint=5, adaptive_backend=backend))
    conv = adaptive_convs(net)[0]
    x = torch.randn(2, 3 * 5, 9, 11)
    with torch.no_grad():
        ours = conv(x)
        centre = F.conv2d(x, conv.weight.sum(dim=(2, 3), keepdim=True), groups=3)
        plain_3x3 = F.conv2d(x, conv.weight, padding=1, groups=3)
        official = torch.cat([official_adapt_block_conv(x[:, 5 * k:5 * k + 5], conv.weight[5 * k:5 * k + 5])
                              for k in range(3)], dim=1)
    torch.testing.assert_close(ours, official, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, centre, rtol=1e-5, atol=1e-5)
    assert (ours - plain_3x3).abs().max() > 0.1


def official_adapt_block_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The official ``AdaptBlock.forward`` up to ``adapt_conv`` (conv_block.py), with the
    transform and translation convs as ``init_weights`` leaves them (all zero)."""
    n, _, h, w = x.shape
    regular_matrix = torch.tensor([[-1, -1, -1, 0, 0, 0, 1, 1, 1], [-1, 0, 1, -1, 0, 1, -1, 0, 1]]).float()
    transform_matrix = torch.zeros(n, 4, h, w).permute(0, 2, 3, 1).reshape((n * h * w, 2, 2))
    offset = torch.matmul(transform_matrix, regular_matrix) - regular_matrix
    offset = offset.transpose(1, 2).reshape((n, h, w, 18)).permute(0, 3, 1, 2)
    translation = torch.zeros(n, 2, h, w)
    offset[:, 0::2] += translation[:, 0:1]
    offset[:, 1::2] += translation[:, 1:2]
    return ops.deform_conv2d(x, offset, weight, padding=1)


def test_pytorch_init_keeps_framework_defaults() -> None:
    torch.manual_seed(0)
    net = DEKRNet(DEKRNetConfig(**SMALL, init="pytorch"))
    for a in adaptive_convs(net):  # random offsets from the start, as before this option existed
        assert torch.count_nonzero(a.transform_matrix_conv.weight) > 0
    head_std = torch.cat([m.weight.detach().flatten() for m in net.heatmap_head.modules()
                          if isinstance(m, nn.Conv2d)]).std()
    assert head_std > 0.01  # PyTorch's kaiming-uniform, not N(0, 0.001)
    with pytest.raises(ValueError, match="init must be"):
        DEKRNet(DEKRNetConfig(**SMALL, init="xavier"))  # type: ignore[arg-type]


def test_official_init_does_not_overwrite_pretrained_backbone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    source = HRNetBackbone("hrnet_w18_small").body.state_dict()  # timm's kaiming init: std >> 0.001
    path = tmp_path / "hrnet_w18_small_imagenet.pth"
    torch.save(source, path)
    net = DEKRNet(DEKRNetConfig(**SMALL, pretrained_backbone=str(path)))
    loaded = net.backbone.body.state_dict()
    assert loaded.keys() == source.keys()
    for key, tensor in source.items():
        assert torch.equal(loaded[key], tensor), key
    # ... while the heads have the official init.
    assert abs(net.heatmap_head.final.weight.std().item() - 0.001) < 0.0003
    assert torch.count_nonzero(adaptive_convs(net)[0].transform_matrix_conv.weight) == 0
