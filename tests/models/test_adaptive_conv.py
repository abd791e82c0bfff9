"""The adaptive convolution: pure-PyTorch deformable conv vs torchvision, offsets vs the official formula,
the chunked recomputing backward vs autograd through the unchunked formulation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from dekr.models.adaptive_conv import (
    REGULAR_GRID,
    AdaptiveConv2d,
    adaptive_conv2d,
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


@pytest.mark.parametrize("max_column_elements", [None, 1])
def test_module_backends_agree(max_column_elements: int | None) -> None:
    torch.manual_seed(3)
    grid = AdaptiveConv2d(5, 5, groups=3, backend="grid_sample")
    grid.max_column_elements = max_column_elements
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


def unchunked_deform_conv(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None = None, dilation: int = 1) -> torch.Tensor:
    """The formulation before chunking, differentiated by autograd: every group's columns sampled
    at once and kept for the backward pass (the slow reference)."""
    n, c_total, h, w = input.shape
    c_out_total, c_in = weight.shape[:2]
    groups = c_total // c_in
    off = offset.reshape(n, groups, 9, 2, h, w)
    tap_y = (REGULAR_GRID[0] * dilation).to(input)[None, None, :, None, None]
    tap_x = (REGULAR_GRID[1] * dilation).to(input)[None, None, :, None, None]
    pos_y = torch.arange(h, dtype=input.dtype)[:, None] + tap_y + off[:, :, :, 0]
    pos_x = torch.arange(w, dtype=input.dtype)[None, :] + tap_x + off[:, :, :, 1]
    grid = torch.stack(((2 * pos_x + 1) / w - 1, (2 * pos_y + 1) / h - 1), dim=-1).reshape(n * groups, 9 * h, w, 2)
    sampled = F.grid_sample(input.reshape(n * groups, c_in, h, w), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    columns = sampled.reshape(n, groups, c_in * 9, h * w)
    out = torch.matmul(weight.reshape(groups, c_out_total // groups, c_in * 9), columns).reshape(n, c_out_total, h, w)
    return out if bias is None else out + bias[None, :, None, None]


# Shapes of the chunking cases: N=2, G=3 groups of 4 input channels, 7x6 map -> one group's columns
# hold 2*4*9*7*6 = 3024 elements, one row of one group 432.
CHUNK_BUDGETS = {
    "one chunk": None,
    "two groups + one": 2 * 3024,
    "one group each": 3024,
    "two rows of one group": 2 * 432,
    "one row of one group": 1,
}


def chunking_case(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    torch.manual_seed(4)
    matrix = torch.randn(2, 12, 7, 6, dtype=dtype) * 1.5
    translation = torch.randn(2, 6, 7, 6, dtype=dtype) * 2
    # Identity matrix and zero translation on two rows: taps at exact integer positions, where the
    # grid_sample gradient is one-sided (torchvision's differs); the recomputation must keep it so.
    matrix[:, :, :2] = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=dtype).repeat(3)[None, :, None, None]
    translation[:, :, :2] = 0
    return {"input": torch.randn(2, 12, 7, 6, dtype=dtype), "matrix": matrix, "translation": translation,
            "weight": torch.randn(9, 4, 3, 3, dtype=dtype), "bias": torch.randn(9, dtype=dtype)}


@pytest.mark.parametrize("budget", CHUNK_BUDGETS.values(), ids=CHUNK_BUDGETS.keys())
@pytest.mark.parametrize("offsets_from", ["offset", "matrix"])
def test_chunked_backward_equals_autograd_through_unchunked_formulation(budget: int | None,
                                                                        offsets_from: str) -> None:
    case = {k: v.requires_grad_() for k, v in chunking_case(torch.float64).items()}
    x, m, t, weight, bias = case["input"], case["matrix"], case["translation"], case["weight"], case["bias"]
    if offsets_from == "offset":
        offset = affine_grid_offsets(m, t, 3)
        ours = deform_conv2d_grid_sample(x, offset, weight, bias, dilation=2, max_column_elements=budget)
    else:
        ours = adaptive_conv2d(x, m, t, weight, bias, dilation=2, max_column_elements=budget)
    ref = unchunked_deform_conv(x, affine_grid_offsets(m, t, 3), weight, bias, dilation=2)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)

    grad_out = torch.randn_like(ref)
    leaves = (x, m, t, weight, bias)
    for name, a, b in zip(("input", "matrix", "translation", "weight", "bias"),
                          torch.autograd.grad(ours, leaves, grad_out), torch.autograd.grad(ref, leaves, grad_out)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("budget", [b for b in CHUNK_BUDGETS.values() if b is not None])
def test_eval_chunking_gives_the_unchunked_output(budget: int) -> None:
    case = chunking_case(torch.float32)
    x, m, t, weight = case["input"], case["matrix"], case["translation"], case["weight"]
    with torch.no_grad():
        whole = adaptive_conv2d(x, m, t, weight, dilation=1)
        chunked = adaptive_conv2d(x, m, t, weight, dilation=1, max_column_elements=budget)
        chunked_offsets = deform_conv2d_grid_sample(x, affine_grid_offsets(m, t, 3), weight,
                                                    max_column_elements=budget)
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(chunked_offsets, whole)


def test_chunked_gradcheck_float64() -> None:
    torch.manual_seed(5)
    x = torch.randn(1, 4, 4, 5, dtype=torch.float64, requires_grad=True)
    # Off integer positions, where bilinear interpolation is differentiable.
    matrix = (torch.eye(2, dtype=torch.float64).reshape(1, 4, 1, 1) + 0.05 * torch.rand(1, 8, 4, 5,
              dtype=torch.float64).reshape(1, 2, 4, 4, 5).sum(1)).repeat(1, 2, 1, 1).requires_grad_()
    translation = (torch.rand(1, 4, 4, 5, dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: adaptive_conv2d(*a, max_column_elements=1),
                                    (x, matrix, translation, weight))


def test_backward_saves_inputs_not_columns() -> None:
    """What the forward pass keeps for the backward pass: the inputs, not the columns (9x the input)."""
    case = {k: v.requires_grad_() for k, v in chunking_case(torch.float32).items()}
    x, m, t, weight = case["input"], case["matrix"], case["translation"], case["weight"]

    def saved_elements(fn) -> int:
        storages: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes() // tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            fn()
        return sum(storages.values())

    inputs = x.numel() + m.numel() + t.numel() + weight.numel()
    assert saved_elements(lambda: adaptive_conv2d(x, m, t, weight)) == inputs
    assert saved_elements(lambda: unchunked_deform_conv(x, affine_grid_offsets(m, t, 3), weight)) > 9 * x.numel()


def test_autocast_samples_in_float32_and_multiplies_in_bfloat16() -> None:
    case = {k: v.requires_grad_() for k, v in chunking_case(torch.float32).items()}
    x, m, t, weight = case["input"], case["matrix"], case["translation"], case["weight"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = adaptive_conv2d(x, m, t, weight, max_column_elements=3024)
    assert out.dtype == torch.bfloat16
    ref = unchunked_deform_conv(x, affine_grid_offsets(m, t, 3), weight)
    assert (out.float() - ref).norm() / ref.norm() < 2e-2
    grads = torch.autograd.grad(out.float().square().sum(), (x, m, t, weight))
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, m, t, weight))
    for name, a, b in zip(("input", "matrix", "translation", "weight"), grads, ref_grads):
        assert a.dtype == torch.float32, name
        assert (a - b).norm() / b.norm() < 5e-2, name


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_traced_convolution_follows_the_input_size() -> None:
    """Export traces plain operators in one chunk: the trace must not freeze sizes or chunks."""
    torch.manual_seed(6)
    conv = AdaptiveConv2d(4, 4, groups=3).eval()
    traced = torch.jit.trace(conv, torch.randn(1, 12, 8, 8), check_trace=False)
    larger = torch.randn(2, 12, 40, 24)
    with torch.no_grad():
        torch.testing.assert_close(traced(larger), conv(larger))


def test_empty_batch_chunked_forward_and_backward() -> None:
    x = torch.randn(0, 12, 7, 6, requires_grad=True)
    m, t = torch.randn(0, 12, 7, 6, requires_grad=True), torch.randn(0, 6, 7, 6, requires_grad=True)
    weight = torch.randn(9, 4, 3, 3, requires_grad=True)
    out = adaptive_conv2d(x, m, t, weight, max_column_elements=1)
    assert out.shape == (0, 9, 7, 6)
    grads = torch.autograd.grad(out.sum(), (x, m, t, weight))
    assert [g.shape for g in grads] == [x.shape, m.shape, t.shape, weight.shape]
    assert torch.count_nonzero(grads[3]) == 0


def test_bad_chunk_and_translation_arguments_are_named() -> None:
    x, m, weight = torch.randn(1, 6, 4, 4), torch.randn(1, 8, 4, 4), torch.randn(4, 3, 3, 3)
    with pytest.raises(ValueError, match="translation has 2 channels, expected 4"):
        adaptive_conv2d(x, m, torch.randn(1, 2, 4, 4), weight)
    with pytest.raises(ValueError, match="weight has 5 output channels, not a multiple of 2 groups"):
        adaptive_conv2d(x, m, torch.randn(1, 4, 4, 4), torch.randn(5, 3, 3, 3))
    with pytest.raises(ValueError, match="max_column_elements"):
        adaptive_conv2d(x, m, torch.randn(1, 4, 4, 4), weight, max_column_elements=0)
