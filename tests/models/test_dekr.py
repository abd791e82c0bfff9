"""The DEKR network: official shapes and parameter counts, ablation switches, compile/channels_last."""
from __future__ import annotations

import pytest
import torch

from dekr.models.backbone import HRNetBackbone
from dekr.models.dekr import DEKRNet, DEKRNetConfig, pad_to_multiple
from benchmarks.per_keypoint_loop import forward_per_keypoint
from dekr.models.offset_blocks.adaptive import AdaptiveBlock
from dekr.models.offset_blocks.basic import BasicBlock

SMALL = dict(backbone="hrnet_w18_small", heatmap_channels=16, offset_channels_per_keypoint=4)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "backbone,k,heatmap_channels,expected",
    [("hrnet_w32", 17, 32, 29_561_182), ("hrnet_w48", 17, 48, 65_684_590),
     ("hrnet_w32", 14, 32, 29_522_071), ("hrnet_w48", 14, 48, 65_634_631)],
)
def test_official_parameter_counts(backbone: str, k: int, heatmap_channels: int, expected: int) -> None:
    net = DEKRNet(DEKRNetConfig(backbone=backbone, num_keypoints=k, heatmap_channels=heatmap_channels))
    assert n_params(net) == expected


def test_output_layout_and_shapes() -> None:
    net = DEKRNet(DEKRNetConfig(num_keypoints=5, **SMALL)).eval()
    with torch.no_grad():
        heatmaps, offsets = net(torch.randn(2, 3, 96, 160))
    assert heatmaps.shape == (2, 6, 24, 40)  # K keypoints + center
    assert offsets.shape == (2, 10, 24, 40)  # (x, y) per keypoint


def test_backbone_concatenates_raw_branches_at_quarter_resolution() -> None:
    backbone = HRNetBackbone("hrnet_w32")
    assert backbone.branch_channels == [32, 64, 128, 256] and backbone.out_channels == 480
    assert HRNetBackbone("hrnet_w48").out_channels == 720
    features = backbone(torch.randn(1, 3, 64, 96))
    assert features.shape == (1, 480, 16, 24)


def test_batched_offset_head_equals_official_per_keypoint_loop() -> None:
    torch.manual_seed(0)
    # init="pytorch": random offset convs, so the sampling grids are not the official init's
    # all-taps-at-the-centre (which would hide errors in the offset layout).
    net = DEKRNet(DEKRNetConfig(num_keypoints=6, init="pytorch", **SMALL)).eval()
    features = torch.randn(1, net.backbone.out_channels, 12, 10)
    with torch.no_grad():
        batched = net.offset_head(features)
        loop = forward_per_keypoint(net.offset_head, features)
    assert (batched - loop).norm() / loop.norm() < 1e-5


def test_ablation_basic_blocks() -> None:
    net = DEKRNet(DEKRNetConfig(offset_block="basic", **SMALL))
    assert all(isinstance(b, BasicBlock) for b in net.offset_head.blocks)
    assert not any(isinstance(m, AdaptiveBlock) for m in net.modules())
    _, offsets = net.eval()(torch.randn(1, 3, 64, 64))
    assert offsets.shape == (1, 34, 16, 16)


def test_ablation_shared_branch() -> None:
    shared = DEKRNet(DEKRNetConfig(disentangled=False, **SMALL))
    split = DEKRNet(DEKRNetConfig(disentangled=True, **SMALL))
    assert shared.offset_head.groups == 1 and split.offset_head.groups == 17
    # A shared branch mixes all channels: its convs have K times the weights of the grouped ones.
    w_shared = shared.offset_head.blocks[0].adapt_conv.weight.numel()
    w_split = split.offset_head.blocks[0].adapt_conv.weight.numel()
    assert w_shared == 17 * w_split
    _, offsets = shared.eval()(torch.randn(1, 3, 64, 64))
    assert offsets.shape == (1, 34, 16, 16)


@pytest.mark.parametrize("channels,blocks,dilation", [(8, 1, 1), (15, 3, 2)])
def test_ablation_width_depth_dilation(channels: int, blocks: int, dilation: int) -> None:
    cfg = DEKRNetConfig(**{**SMALL, "offset_channels_per_keypoint": channels}, offset_blocks=blocks, dilation=dilation)
    net = DEKRNet(cfg)
    assert len(net.offset_head.blocks) == blocks
    assert net.offset_head.transition[0].out_channels == 17 * channels
    assert net.offset_head.blocks[0].adapt_conv.dilation == dilation
    _, offsets = net.eval()(torch.randn(1, 3, 64, 64))
    assert offsets.shape == (1, 34, 16, 16)


def test_backends_agree_on_whole_network() -> None:
    torch.manual_seed(0)
    a = DEKRNet(DEKRNetConfig(num_keypoints=4, adaptive_backend="grid_sample", **SMALL)).eval()
    b = DEKRNet(DEKRNetConfig(num_keypoints=4, adaptive_backend="torchvision", **SMALL)).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for out_a, out_b in zip(a(x), b(x)):
            assert (out_a - out_b).norm() / out_b.norm() < 1e-5


def test_channels_last_matches_contiguous() -> None:
    torch.manual_seed(0)
    net = DEKRNet(DEKRNetConfig(num_keypoints=4, **SMALL)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
        net_cl = net.to(memory_format=torch.channels_last)
        out = net_cl(x.contiguous(memory_format=torch.channels_last))
    for o, r in zip(out, ref):
        assert (o - r).norm() / r.norm() < 1e-4


def test_torch_compile_traces_whole_network_without_graph_breaks() -> None:
    torch.manual_seed(0)
    net = DEKRNet(DEKRNetConfig(num_keypoints=3, **SMALL)).eval()
    x = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(net, backend="eager", fullgraph=True)  # fullgraph: fail on any graph break
    with torch.no_grad():
        ref, out = net(x), compiled(x)
    for o, r in zip(out, ref):
        assert (o - r).norm() / r.norm() < 1e-5


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager() -> None:
    torch.manual_seed(0)
    net = DEKRNet(DEKRNetConfig(num_keypoints=3, **SMALL)).eval()
    x = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(net)  # default inductor backend: generates and compiles C++ on the CPU
    with torch.no_grad():
        ref, out = net(x), compiled(x)
    for o, r in zip(out, ref):
        assert (o - r).norm() / r.norm() < 1e-4


def test_bad_inputs_say_what_is_required() -> None:
    net = DEKRNet(DEKRNetConfig(num_keypoints=3, **SMALL)).eval()
    with pytest.raises(ValueError, match="3 input channels"):
        net(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="multiples of 32.*65x64"):
        net(torch.randn(1, 3, 65, 64))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(torch.randn(3, 64, 64))
    padded = pad_to_multiple(torch.randn(1, 3, 65, 70))
    assert padded.shape[-2:] == (96, 96)
    with pytest.raises(ValueError, match="not a timm HRNet"):
        DEKRNet(DEKRNetConfig(backbone="resnet50"))
    with pytest.raises(ValueError, match="offset_block"):
        DEKRNet(DEKRNetConfig(offset_block="fancy"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown model.net option"):
        DEKRNetConfig.from_dict({"backbone": "hrnet_w32", "num_joints": 17})
