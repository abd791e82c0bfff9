"""Sampling points of the adaptive convolutions: against hand computations with set M and t, against
where the convolution really reads (a probe on coordinate ramps), and through the whole image path
(resize, centre NMS, back to original pixels)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dekr.data.dataset import read_image_rgb
from dekr.data.spec import load_spec
from dekr.inference.config import DecodeConfig
from dekr.inference.offset_sampling import (
    NoAdaptiveConvError,
    adaptive_convs,
    adaptive_sampling_points,
    image_offset_sampling,
    record_affine_maps,
    sampling_points,
)
from dekr.inference.preprocess import resize_info
from dekr.models.adaptive_conv import AdaptiveConv2d
from dekr.models.dekr import DEKRNet, DEKRNetConfig
from tests.helpers.paths import FIXTURES

SPEC = load_spec("coco")
# Row-major 3x3 grid as (x, y): the taps' order.
GRID_XY = [(gx, gy) for gy in (-1, 0, 1) for gx in (-1, 0, 1)]


def tiny_net(dilation: int = 1, blocks: int = 2, block: str = "adaptive", num_keypoints: int = 3) -> DEKRNet:
    net = DEKRNet(DEKRNetConfig(backbone="hrnet_w18_small", num_keypoints=num_keypoints, heatmap_channels=8,
                                offset_channels_per_keypoint=4, offset_blocks=blocks, offset_block=block,
                                dilation=dilation))
    return net.eval()


def set_affine(conv: AdaptiveConv2d, matrices: list[list[float]], translations: list[list[float]]) -> None:
    """Every pixel predicts, for group g, the row-major matrix ``matrices[g]`` (on (y, x)) and
    ``translations[g]`` = (ty, tx): zero weights, the values as biases."""
    with torch.no_grad():
        conv.transform_matrix_conv.weight.zero_()
        conv.translation_conv.weight.zero_()
        conv.transform_matrix_conv.bias.copy_(torch.tensor(matrices, dtype=torch.float32).reshape(-1))
        conv.translation_conv.bias.copy_(torch.tensor(translations, dtype=torch.float32).reshape(-1))


IDENTITY = [1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("dilation", [1, 2])
def test_identity_and_translation_against_hand_computation(dilation: int) -> None:
    """M = I, t = 0: the plain 3x3 grid around the centre, ``4 * dilation`` input pixels apart; a
    translation (ty, tx) moves all 9 taps by 4 * (tx, ty) input pixels; each conv is its own layer."""
    net = tiny_net(dilation)
    first, second = adaptive_convs(net)
    set_affine(first, [IDENTITY] * 3, [[0.0, 0.0]] * 3)
    set_affine(second, [IDENTITY] * 3, [[0.0, 0.0], [0.5, -1.25], [-2.0, 3.0]])  # (ty, tx) per keypoint
    centers = torch.tensor([[32.0, 48.0], [4.0, 60.0]])  # input pixels, output pixels (8, 12) and (1, 15)
    points = adaptive_sampling_points(net, torch.zeros(1, 3, 64, 96), centers)
    assert points.shape == (2, 3, 2, 9, 2)
    for p, (cx, cy) in enumerate(centers.tolist()):
        plain = torch.tensor([(cx + 4 * dilation * gx, cy + 4 * dilation * gy) for gx, gy in GRID_XY])
        for k in range(3):
            assert torch.equal(points[p, k, 0], plain)
        assert torch.equal(points[p, 0, 1], plain)
        assert torch.equal(points[p, 1, 1], plain + torch.tensor([-1.25 * 4, 0.5 * 4]))
        assert torch.equal(points[p, 2, 1], plain + torch.tensor([3.0 * 4, -2.0 * 4]))


def test_matrix_acts_on_y_x_with_dilation() -> None:
    """M = [[2, 0], [0.5, 1]] on (y, x), dilation 2: tap (gx, gy) lands at
    centre + 2 G + (M G - G) = (x + 2 gx + 0.5 gy, y + 3 gy) output pixels. M = 0 (the official init)
    with dilation 1: every tap at the centre."""
    net = tiny_net(dilation=2, blocks=1, num_keypoints=2)
    (conv,) = adaptive_convs(net)
    set_affine(conv, [[2.0, 0.0, 0.5, 1.0], IDENTITY], [[0.0, 0.0]] * 2)
    points = adaptive_sampling_points(net, torch.zeros(1, 3, 64, 64), torch.tensor([[40.0, 24.0]]))
    expected = torch.tensor([(40 + 4 * (2 * gx + 0.5 * gy), 24 + 4 * 3 * gy) for gx, gy in GRID_XY])
    assert torch.equal(points[0, 0, 0], expected)
    assert torch.equal(points[0, 1, 0], torch.tensor([(40 + 8 * gx, 24 + 8 * gy) for gx, gy in GRID_XY]))

    official = tiny_net(blocks=1, num_keypoints=2)  # init "official": zero offset predictors
    points = adaptive_sampling_points(official, torch.zeros(1, 3, 64, 64), torch.tensor([[41.0, 23.0]]))
    assert torch.equal(points, torch.tensor([40.0, 24.0]).expand(1, 2, 1, 9, 2))  # the nearest output pixel


class ProbeNet(nn.Module):
    """An adaptive conv as a network's ``offset_head``, fed (x, y) coordinate ramps."""

    def __init__(self, conv: AdaptiveConv2d) -> None:
        super().__init__()
        self.offset_head = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.offset_head(x)


@pytest.mark.parametrize("backend", ["grid_sample", "torchvision"])
@pytest.mark.parametrize("dilation", [1, 2])
def test_points_are_where_the_convolution_reads(backend: str, dilation: int) -> None:
    """Independent of the formula: a conv whose kernel keeps tap k only reads, on an x ramp and a
    y ramp (bilinear sampling is exact on a linear ramp), the coordinates of its tap-k sample."""
    torch.manual_seed(0)
    groups, h, w = 3, 20, 24
    conv = AdaptiveConv2d(2, 2, groups, dilation, backend)
    set_affine(conv, (torch.eye(2).reshape(1, 4) + 0.4 * torch.randn(groups, 4)).tolist(),
               torch.randn(groups, 2).tolist())
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    ramps = torch.stack([xs, ys]).repeat(groups, 1, 1)[None]  # (1, 2G, h, w): per group (x, y)
    net = ProbeNet(conv)
    pixels = torch.tensor([[0, 12, 9], [0, 10, 11]])  # (image, x, y), far enough from the border
    with torch.no_grad(), record_affine_maps(net) as recorded:
        net(ramps)
    points = sampling_points(recorded[0], pixels)  # (P, G, 9, 2) output pixels
    for tap in range(9):
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0::2, 0, tap // 3, tap % 3] = 1.0  # out channel 0 of each group <- its x ramp
            conv.weight[1::2, 1, tap // 3, tap % 3] = 1.0  # out channel 1 <- its y ramp
            read = net(ramps)
        for p, (_, x, y) in enumerate(pixels.tolist()):
            torch.testing.assert_close(read[0, :, y, x].reshape(groups, 2), points[p, :, tap], atol=1e-4, rtol=0)


@pytest.mark.parametrize("block,name", [("basic", "BasicBlock"), ("deformable", "DeformableBlock")])
def test_a_network_without_adaptive_convs_is_refused(block: str, name: str) -> None:
    net = tiny_net(block=block)
    with pytest.raises(NoAdaptiveConvError, match=f"its offset blocks: {name}"):
        adaptive_convs(net)
    with pytest.raises(NoAdaptiveConvError, match="no adaptive convolutions"):
        image_offset_sampling(net, np.zeros((64, 64, 3), np.uint8), SPEC)


@pytest.mark.parametrize("flip_test", [False, True])
def test_image_path_maps_points_to_original_pixels(flip_test: bool) -> None:
    """A real image: centres are centre-heatmap peaks over the threshold, at input pixel 4 * output
    pixel mapped back to the original image; with M = I and known t, the centre tap lies at the
    centre plus 4 t / f and the grid spacing is 4 / f (f the resize factor)."""
    net = tiny_net(num_keypoints=17)
    first, second = adaptive_convs(net)
    set_affine(first, [IDENTITY] * 17, [[0.0, 0.0]] * 17)
    set_affine(second, [IDENTITY] * 17, [[1.0, -0.5]] * 17)
    with torch.no_grad():  # a centre heatmap with one peak at output pixel (10, 6): a bias and a bump
        final = net.heatmap_head.final
        final.weight.zero_()
        final.bias.zero_()
    image = read_image_rgb(FIXTURES / "coco" / "000000000785.jpg")
    cfg = DecodeConfig.for_dataset(SPEC, input_size=128, flip_test=flip_test)

    def bump(module, args, output):
        output = output.clone()
        output[:, -1, 6, 10] = 0.5
        if flip_test:  # the flipped half, mirrored: its peak flips back onto the same pixel
            output[1, -1, 6, 10] = 0.0
            output[1, -1, 6, output.shape[-1] - 1 - 10] = 0.5
        return output

    handle = net.heatmap_head.register_forward_hook(bump)
    try:
        sampling = image_offset_sampling(net, image, SPEC, cfg)
        none = image_offset_sampling(net, image, SPEC, cfg, min_score=0.6)
    finally:
        handle.remove()
    assert len(none) == 0 and none.points.shape == (0, 17, 2, 9, 2)
    assert len(sampling) == 1 and sampling.center_scores[0] == pytest.approx(0.5)
    info = resize_info(*image.shape[:2], 128)
    center = info.to_original(torch.tensor([40.0, 24.0])).numpy()
    np.testing.assert_allclose(sampling.centers[0], center, atol=1e-4)
    f = info.factor
    grid = np.array(GRID_XY, dtype=np.float32) * 4 / f
    np.testing.assert_allclose(sampling.points[0, :, 0], np.broadcast_to(center + grid, (17, 9, 2)), atol=1e-3)
    shift = np.array([-0.5, 1.0]) * 4 / f  # t = (ty, tx) = (1, -0.5) output pixels
    np.testing.assert_allclose(sampling.points[0, :, 1], np.broadcast_to(center + grid + shift, (17, 9, 2)),
                               atol=1e-3)
