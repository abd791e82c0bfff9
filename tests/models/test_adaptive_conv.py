"""The adaptive convolution: pure-PyTorch deformable conv vs torchvision, offsets vs the official formula."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d

from dekr.models.adaptive_conv import (
    REGULAR_GRID,
    AdaptiveConv2d,
    affine_grid_offsets,
    deform_conv2d_grid_sample,
)


def official_offsets(matrix: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """The official AdaptBlock's offset construction, written as the official code does it."""
    n, _, h, w = matrix.shape
    m = matrix.permute(0, 2, 3, 1).reshape(n * h * w, 2, 2)
    offset = torch.matmul(m, REGULAR_GRID.to(matrix)) - REGULAR_GRID.to(matrix)
    offset = offset.transpose(1, 2).reshape(n, h, w, 18).permute(0, 3, 1, 2).clone()
    offset[:, 0::2] += translation[:, 0:1]
    offset[:, 1::2] += translation[:, 1:2]
    return offset


def test_affine_offsets_match_official_construction_per_group() -> None:
    torch.manual_seed(0)
    groups = 3
    matrix, translation = torch.randn(2, 4 * groups, 5, 6), torch.randn(2, 2 * groups, 5, 6)
    ours = affine_grid_offsets(matrix, translation, groups)
    for g in range(groups):
        ref = official_offsets(matrix[:, 4 * g:4 * g + 4], translation[:, 2 * g:2 * g + 2])
        torch.testing.assert_close(ours[:, 18 * g:18 * g + 18], ref, rtol=0, atol=1e-6)


def test_identity_matrix_gives_pure_translation() -> None:
    matrix = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 4, 1, 1).expand(1, 4, 3, 3)
    translation = torch.tensor([0.5, -2.0]).view(1, 2, 1, 1).expand(1, 2, 3, 3)
    off = affine_grid_offsets(matrix, translation).view(1, 9, 2, 3, 3)
    assert torch.allclose(off[:, :, 0], torch.full_like(off[:, :, 0], 0.5))  # dy
    assert torch.allclose(off[:, :, 1], torch.full_like(off[:, :, 1], -2.0))  # dx


@pytest.mark.parametrize("groups,dilation", [(1, 1), (4, 1), (3, 2)])
def test_grid_sample_matches_torchvision_forward_and_gradients(groups: int, dilation: int) -> None:
    torch.manual_seed(groups * 10 + dilation)
    c_in, c_out, h, w = 5, 6, 9, 11
    x = torch.randn(2, groups * c_in, h, w, requires_grad=True)
    # Offsets large enough that many taps fall outside the map (zero padding path).
    offset = (torch.randn(2, groups * 18, h, w) * 3).requires_grad_()
    weight = torch.randn(groups * c_out, c_in, 3, 3, requires_grad=True)
    bias = torch.randn(groups * c_out, requires_grad=True)

    ours = deform_conv2d_grid_sample(x, offset, weight, bias, dilation=dilation)
    ref = deform_conv2d(x, offset, weight, bias, padding=dilation, dilation=dilation)
    assert (ours - ref).norm() / ref.norm() < 1e-5

    grad_out = torch.randn_like(ref)
    g_ours = torch.autograd.grad(ours, (x, offset, weight, bias), grad_out)
    g_ref = torch.autograd.grad(ref, (x, offset, weight, bias), grad_out)
    for name, a, b in zip(("input", "offset", "weight", "bias"), g_ours, g_ref):
        assert (a - b).norm() / b.norm() < 1e-5, name


def test_grid_sample_gradcheck_float64() -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 4, 4, 5, dtype=torch.float64, requires_grad=True)
    # Keep sampling points off integer positions, where bilinear interpolation is not differentiable.
    offset = (torch.rand(1, 36, 4, 5, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: deform_conv2d_grid_sample(*a), (x, offset, weight))


def test_non_contiguous_input_and_empty_batch() -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 6, 8, 8).transpose(2, 3)  # non-contiguous
    offset = torch.randn(2, 36, 8, 8)
    weight = torch.randn(4, 3, 3, 3)
    ref = deform_conv2d(x.contiguous(), offset, weight, padding=1)
    torch.testing.assert_close(deform_conv2d_grid_sample(x, offset, weight), ref, rtol=1e-5, atol=1e-5)
    empty = deform_conv2d_grid_sample(x[:0], offset[:0], weight)
    assert empty.shape == (0, 4, 8, 8)


def test_module_backends_agree() -> None:
    torch.manual_seed(3)
    grid = AdaptiveConv2d(5, 5, groups=3, backend="grid_sample")
    tv = AdaptiveConv2d(5, 5, groups=3, backend="torchvision")
    tv.load_state_dict(grid.state_dict())
    x = torch.randn(2, 15, 7, 9)
    a, b = grid(x), tv(x)
    assert (a - b).norm() / b.norm() < 1e-5
    ga = torch.autograd.grad(a.square().sum(), list(grid.parameters()))
    gb = torch.autograd.grad(b.square().sum(), list(tv.parameters()))
    for p, q in zip(ga, gb):
        assert (p - q).norm() / q.norm() < 1e-5


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="adaptive_backend"):
        AdaptiveConv2d(5, 5, backend="cuda_magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="offset has 18 channels"):
        deform_conv2d_grid_sample(torch.randn(1, 6, 4, 4), torch.randn(1, 18, 4, 4), torch.randn(4, 3, 3, 3))
