"""Adaptive convolution (DEKR): a 3x3 deformable convolution whose sampling grid is an affine
transform of the regular grid, predicted per pixel.

In the torchvision ``ops`` manner, functions and a module:

* :func:`deform_conv2d_grid_sample` -- a pure-PyTorch grouped deformable 3x3 convolution with
  torchvision's ``deform_conv2d`` argument and offset conventions (differentiable, CPU/GPU,
  exports to ONNX through ``GridSample``). One call serves all groups at once, so DEKR's K
  per-keypoint branches run as one batched computation instead of a Python loop.
* :func:`affine_grid_offsets` -- turns the per-pixel 2x2 matrix and translation into the 18
  offsets of each 3x3 kernel.
* :func:`adaptive_conv2d` -- the two above in one call, never holding the whole offsets.
* :class:`AdaptiveConv2d` -- the learnable module: predicts matrix and translation with 3x3
  convs and applies the deformable conv; ``groups`` independent branches side by side.

Both convolutions sample chunk by chunk and recompute the samples in the backward pass
(:class:`_ChunkedDeformConv`): batching the K branches makes them fast, and chunking keeps
their memory at the per-keypoint loop's.
"""
from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

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

#: Per device type, columns of at most this many elements are built in one chunk whatever the
#: input's size. On CPU, chunks that stay in cache are no slower than one large product, so a
#: small floor only spares tiny maps the Python loop; on a GPU every chunk costs some twenty
#: kernel launches, which chunks need hundreds of MB to hide (memory there is counted in GB).
MIN_COLUMN_CHUNK = {"cpu": 1 << 18, "cuda": 1 << 26}


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
    max_column_elements: int | None = None,
) -> Tensor:
    """Grouped deformable 3x3 convolution, stride 1, "same" padding (= dilation), in pure PyTorch.

    Same semantics as ``torchvision.ops.deform_conv2d(input, offset, weight, bias,
    padding=dilation, dilation=dilation)`` with as many offset groups as weight groups: each tap
    samples bilinearly at ``(y + (ky-1)*dilation + dy, x + (kx-1)*dilation + dx)``; samples outside
    the map read zeros (per bilinear corner, exactly like torchvision's kernel).

    Memory: the bilinear samples (the columns, (N, G*Cin*9, H, W), nine times the input) are
    built a chunk of groups (for a group larger than the budget, of rows) at a time and never
    kept: the backward pass saves only ``input``, ``offset`` and ``weight`` and samples each
    chunk again, as torchvision's ``deform_conv2d`` does. Sampling runs in float32 (float64 for
    float64 inputs) whatever the input dtype, since bfloat16 cannot place a tap to a fraction of
    a pixel; the matrix product runs in autocast's dtype when autocast is on, else in ``weight``'s.

    Args:
        input: (N, G*Cin, H, W).
        offset: (N, G*18, H, W), (dy, dx) per tap per group, in input pixels.
        weight: (G*Cout, Cin, 3, 3).
        bias: optional (G*Cout,).
        dilation: spacing of the regular grid.
        max_column_elements: most elements of columns built at once; ``None``: about as many as
            ``input`` holds (see :func:`default_column_budget`).

    Returns:
        (N, G*Cout, H, W).
    """
    groups = _check_groups(input, weight, {"offset": (offset, 18)})
    return _deform_conv(input, weight, bias, dilation, max_column_elements, groups, _Offsets(offset, None, None))


def adaptive_conv2d(
    input: Tensor,
    matrix: Tensor,
    translation: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    dilation: int = 1,
    max_column_elements: int | None = None,
) -> Tensor:
    """``deform_conv2d_grid_sample(input, affine_grid_offsets(matrix, translation, G), weight, ...)``
    without ever holding the whole (N, G*18, H, W) offsets.

    Each chunk's offsets are made from the chunk's rows of ``matrix`` and ``translation``, in the
    forward pass and again in the backward pass, which saves those two (6 channels per group)
    instead of the offsets (18).

    Args:
        input: (N, G*Cin, H, W).
        matrix: (N, 4*G, H, W); per group the row-major 2x2 matrix acting on (y, x).
        translation: (N, 2*G, H, W); per group (ty, tx), in input pixels.
        weight, bias, dilation, max_column_elements: as :func:`deform_conv2d_grid_sample`.

    Returns:
        (N, G*Cout, H, W).
    """
    groups = _check_groups(input, weight, {"matrix": (matrix, 4), "translation": (translation, 2)})
    return _deform_conv(input, weight, bias, dilation, max_column_elements, groups,
                        _Offsets(None, matrix, translation))


def default_column_budget(input: Tensor) -> int:
    """Elements of columns built at once by default: as many as ``input`` holds, at least
    ``MIN_COLUMN_CHUNK`` of its device type (the CUDA floor on other accelerators).

    The whole columns are nine times the input; chunks of the input's size keep the temporary
    proportional to what the layer holds anyway, like the per-keypoint loop's, while each chunk
    remains one large batched kernel. In DEKR's head that is one keypoint branch per chunk (its
    columns: 15*9 channels, the input: 17*15).
    """
    floor = MIN_COLUMN_CHUNK.get(input.device.type, MIN_COLUMN_CHUNK["cuda"])
    return max(input.numel(), floor)


class _Offsets(NamedTuple):
    """Where the offsets come from: ``offset`` (N, G*18, H, W) itself, or ``matrix`` (N, 4G, H, W)
    and ``translation`` (N, 2G, H, W) through :func:`affine_grid_offsets`."""

    offset: Tensor | None
    matrix: Tensor | None
    translation: Tensor | None

    def to(self, dtype: torch.dtype) -> _Offsets:
        return _Offsets(*(None if t is None else t.to(dtype) for t in self))


class _Chunk(NamedTuple):
    """Groups ``groups`` (``None``: all ``num_groups``) and output rows ``rows`` (``None``: all)."""

    num_groups: int
    groups: slice | None = None
    rows: slice | None = None

    def part(self, tensor: Tensor, per_group: int) -> Tensor:
        """The chunk's groups and rows of a (N, G*per_group, H, W) tensor (a view)."""
        if self.groups is None and self.rows is None:
            return tensor
        return tensor[:, self.channels(per_group), slice(None) if self.rows is None else self.rows]

    def channels(self, per_group: int) -> slice:
        """The chunk's channels in a tensor of ``per_group`` channels per group."""
        return slice(None) if self.groups is None else slice(self.groups.start * per_group,
                                                             self.groups.stop * per_group)


def _check_groups(input: Tensor, weight: Tensor, offsets: dict[str, tuple[Tensor, int]]) -> int:
    """The number of groups of a 3x3 grouped deformable convolution; a clear error on bad shapes."""
    c_total = input.shape[1]
    c_in, kh, kw = weight.shape[1:]
    if (kh, kw) != (3, 3):
        raise ValueError(f"deform_conv2d_grid_sample supports 3x3 kernels only, got {kh}x{kw}")
    if c_total % c_in:
        raise ValueError(f"input channels {c_total} are not a multiple of weight's {c_in} per group")
    groups = c_total // c_in
    if weight.shape[0] % groups:
        raise ValueError(f"weight has {weight.shape[0]} output channels, not a multiple of {groups} groups")
    for name, (tensor, per_group) in offsets.items():
        if tensor.shape[1] != per_group * groups:
            raise ValueError(f"{name} has {tensor.shape[1]} channels, expected {per_group * groups} "
                             f"for {groups} groups")
    return groups


def _deform_conv(input: Tensor, weight: Tensor, bias: Tensor | None, dilation: int,
                 max_column_elements: int | None, groups: int, offsets: _Offsets) -> Tensor:
    """Chooses dtypes and chunks and runs :class:`_ChunkedDeformConv`, or, when traced for
    export, the same computation as plain operators in one chunk."""
    if max_column_elements is not None and max_column_elements < 1:
        raise ValueError(f"max_column_elements must be positive, got {max_column_elements}")
    device_type = input.device.type
    sample_dtype = torch.promote_types(input.dtype, torch.float32)
    autocast = torch.is_autocast_enabled(device_type)
    product_dtype = torch.get_autocast_dtype(device_type) if autocast else weight.dtype
    # Differentiable casts (no-ops in plain float32): autograd takes the gradients back to the
    # callers' dtypes; the chunked function then runs with autocast off, on exactly these dtypes.
    input, weight, offsets = input.to(sample_dtype), weight.to(product_dtype), offsets.to(sample_dtype)
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        # Exporters record operators, not a Python autograd function, and a chunk loop would
        # freeze the traced sizes. torch.compile plans memory itself (its partitioner chooses what
        # the backward recomputes); chunks planned from the input's size would add size guards
        # and a recompilation (minutes on a CPU) for every new validation image size.
        out = _convolve_chunk(input, weight, dilation, groups, _Chunk(groups), offsets)
        return out if bias is None else out + bias[None, :, None, None]
    n, _, h, w = input.shape
    budget = default_column_budget(input) if max_column_elements is None else max_column_elements
    chunks = _plan_chunks(n, groups, weight.shape[1], h, w, budget)
    with torch.autocast(device_type, enabled=False):
        return _ChunkedDeformConv.apply(input, weight, bias, dilation, groups, chunks, *offsets)


def _plan_chunks(n: int, groups: int, c_in: int, h: int, w: int, budget: int) -> list[_Chunk]:
    """Chunks whose columns hold at most ``budget`` elements (one row of one group at least).

    Whole groups first, so that a chunk's input gradient is the slice of its groups rather
    than a full-size tensor to add up; rows only when one group alone is over the budget.
    """
    group_columns = n * c_in * 9 * h * w
    if group_columns * groups <= budget:
        return [_Chunk(groups)]
    if group_columns <= budget:
        size = math.ceil(groups / math.ceil(groups / (budget // group_columns)))  # balanced chunks
        return [_Chunk(min(size, groups - g), slice(g, min(g + size, groups))) for g in range(0, groups, size)]
    rows = math.ceil(h / math.ceil(h / max(1, budget // (n * c_in * 9 * w))))
    return [_Chunk(1, slice(g, g + 1), slice(r, min(r + rows, h))) for g in range(groups) for r in range(0, h, rows)]


def _chunk_offsets(offsets: _Offsets, chunk: _Chunk) -> Tensor:
    """(N, g*18, R, W) offsets of the chunk's groups and rows."""
    if offsets.offset is not None:
        return chunk.part(offsets.offset, 18)
    return affine_grid_offsets(chunk.part(offsets.matrix, 4), chunk.part(offsets.translation, 2), chunk.num_groups)


def _affine_offsets_backward(grad_offsets: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Gradients for ``matrix`` (N, 4g, R, W) and ``translation`` (N, 2g, R, W) of
    :func:`affine_grid_offsets` from that of its offsets (N, g*18, R, W): its linear map transposed."""
    n, _, h, w = grad_offsets.shape
    grad = grad_offsets.reshape(n, num_groups, 9, 2, h, w)
    grad_matrix = torch.einsum("ngtihw,jt->ngijhw", grad, REGULAR_GRID.to(grad))
    return grad_matrix.reshape(n, num_groups * 4, h, w), grad.sum(2).reshape(n, num_groups * 2, h, w)


def _sampling_grid(offsets: Tensor, chunk: _Chunk, height: int, width: int, dilation: int) -> Tensor:
    """``grid_sample`` grid (N*g, 9*R, W, 2), (x, y) in [-1, 1], of the chunk's offsets (N, g*18, R, W).

    Along dim 1 the grid runs ``tap * R + row``, so that the samples (N*g, Cin, 9*R, W) reshape
    to the (Cin*9, R*W) columns.
    """
    n, _, num_rows, _ = offsets.shape
    off = offsets.reshape(n, chunk.num_groups, 9, 2, num_rows, width)
    tap_y = (REGULAR_GRID[0] * dilation).to(offsets)[None, None, :, None, None]
    tap_x = (REGULAR_GRID[1] * dilation).to(offsets)[None, None, :, None, None]
    base_y = torch.arange(height, device=offsets.device, dtype=offsets.dtype)[:, None]
    if chunk.rows is not None:
        base_y = base_y[chunk.rows]
    base_x = torch.arange(width, device=offsets.device, dtype=offsets.dtype)[None, :]
    pos_y = base_y + tap_y + off[:, :, :, 0]
    pos_x = base_x + tap_x + off[:, :, :, 1]
    # grid_sample's align_corners=False maps pixel p to (2p + 1) / size - 1.
    grid = torch.stack(((2 * pos_x + 1) / width - 1, (2 * pos_y + 1) / height - 1), dim=-1)
    return grid.reshape(n * chunk.num_groups, 9 * num_rows, width, 2)


def _group_batch(input: Tensor, chunk: _Chunk, c_in: int) -> Tensor:
    """The chunk's groups (all rows) of ``input`` (N, G*Cin, H, W) as a batch (N*g, Cin, H, W)."""
    n, _, h, w = input.shape
    return _Chunk(chunk.num_groups, chunk.groups).part(input, c_in).reshape(n * chunk.num_groups, c_in, h, w)


def _sample_columns(input_batch: Tensor, grid: Tensor, n: int, num_groups: int) -> Tensor:
    """Bilinear samples of ``input_batch`` (N*g, Cin, H, W) at ``grid`` (N*g, 9*R, W, 2), as the
    columns (N, g, Cin*9, R*W) of the deformable convolution (zeros outside the map)."""
    c_in, w = input_batch.shape[1], input_batch.shape[3]
    sampled = F.grid_sample(input_batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return sampled.reshape(n, num_groups, c_in * 9, grid.shape[1] // 9 * w)


def _chunk_kernel(weight: Tensor, chunk: _Chunk, groups: int) -> Tensor:
    """(g, Cout, Cin*9) weights of the chunk's groups; taps (Cin, 3, 3) row-major like the columns."""
    c_out, c_in = weight.shape[0] // groups, weight.shape[1]
    return weight[chunk.channels(c_out)].reshape(chunk.num_groups, c_out, c_in * 9)


def _convolve_chunk(input: Tensor, weight: Tensor, dilation: int, groups: int, chunk: _Chunk,
                    offsets: _Offsets) -> Tensor:
    """The convolution (no bias) of the chunk's groups and rows: (N, g*Cout, R, W), in ``weight``'s dtype."""
    n, _, h, w = input.shape
    grid = _sampling_grid(_chunk_offsets(offsets, chunk), chunk, h, w, dilation)
    columns = _sample_columns(_group_batch(input, chunk, weight.shape[1]), grid, n, chunk.num_groups)
    kernel = _chunk_kernel(weight, chunk, groups)
    out = torch.matmul(kernel, columns.to(weight.dtype))  # (N, g, Cout, R*W)
    return out.reshape(n, chunk.num_groups * kernel.shape[1], grid.shape[1] // 9, w)


class _ChunkedDeformConv(torch.autograd.Function):
    """The deformable convolution chunk by chunk, with a backward pass that samples again.

    Autograd through :func:`_convolve_chunk` would keep each chunk's columns for the weight and
    input gradients: nine times the input in all. The forward pass here keeps only its inputs;
    the backward pass makes each chunk's grid and columns again and calls ``grid_sample``'s own
    backward kernel, so the gradients are those autograd would give. Runs with autocast off, on
    the dtypes :func:`_deform_conv` chose; ``offset`` or ``matrix`` and ``translation`` is given.
    """

    @staticmethod
    def forward(ctx: Any, input: Tensor, weight: Tensor, bias: Tensor | None, dilation: int, groups: int,
                chunks: list[_Chunk], offset: Tensor | None, matrix: Tensor | None,
                translation: Tensor | None) -> Tensor:
        offsets = _Offsets(offset, matrix, translation)
        if len(chunks) == 1:
            out = _convolve_chunk(input, weight, dilation, groups, chunks[0], offsets)
        else:
            n, _, h, w = input.shape
            out = input.new_empty((n, weight.shape[0], h, w), dtype=weight.dtype)
            c_out = weight.shape[0] // groups
            for chunk in chunks:
                chunk.part(out, c_out).copy_(_convolve_chunk(input, weight, dilation, groups, chunk, offsets))
        if bias is not None:
            out = out + bias[None, :, None, None]
        ctx.save_for_backward(input, weight, *offsets)
        ctx.dilation, ctx.groups, ctx.chunks = dilation, groups, chunks
        ctx.bias_dtype = None if bias is None else bias.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        input, weight, *saved_offsets = ctx.saved_tensors
        offsets = _Offsets(*saved_offsets)
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        need_offsets = any(ctx.needs_input_grad[6:])
        n, _, h, w = input.shape
        groups, c_in = ctx.groups, weight.shape[1]
        c_out = weight.shape[0] // groups
        grad_input = torch.zeros_like(input) if need_input else None
        grad_offsets = _Offsets(*(None if t is None or not need_offsets else torch.empty_like(t) for t in offsets))
        # Summed over chunks in float32 at least: one rounding for bfloat16 weights, as in one product.
        grad_weight = (torch.zeros(weight.shape, dtype=torch.promote_types(weight.dtype, torch.float32),
                                   device=weight.device) if need_weight else None)
        with torch.autocast(input.device.type, enabled=False):
            for chunk in ctx.chunks:
                grid = _sampling_grid(_chunk_offsets(offsets, chunk), chunk, h, w, ctx.dilation)
                num_rows = grid.shape[1] // 9
                chunk_grad = chunk.part(grad_out, c_out).to(weight.dtype).reshape(n, chunk.num_groups, c_out,
                                                                                   num_rows * w)
                input_batch = _group_batch(input, chunk, c_in)
                if grad_weight is not None:
                    columns = _sample_columns(input_batch, grid, n, chunk.num_groups).to(weight.dtype)
                    kernel_grad = torch.matmul(chunk_grad, columns.transpose(2, 3)).sum(0)  # (g, Cout, Cin*9)
                    grad_weight[chunk.channels(c_out)] += kernel_grad.reshape(-1, c_in, 3, 3)
                    del columns, kernel_grad  # freed before the column gradient, of the same size
                if not (need_input or need_offsets):
                    continue
                kernel = _chunk_kernel(weight, chunk, groups)
                grad_columns = torch.matmul(kernel.transpose(1, 2), chunk_grad).to(input.dtype)
                grad_batch, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
                    grad_columns.reshape(n * chunk.num_groups, c_in, 9 * num_rows, w), input_batch, grid,
                    0, 0, False, [need_input, need_offsets],
                )  # bilinear (0), zeros padding (0), align_corners=False: as _sample_columns
                del grad_columns
                if grad_input is not None:
                    _Chunk(chunk.num_groups, chunk.groups).part(grad_input, c_in).add_(
                        grad_batch.reshape(n, chunk.num_groups * c_in, h, w))
                if need_offsets:
                    _write_offset_grads(grad_offsets, chunk, grad_grid, n, h, w)
        grad_bias = grad_out.sum((0, 2, 3)).to(ctx.bias_dtype) if need_bias else None
        return (grad_input, None if grad_weight is None else grad_weight.to(weight.dtype), grad_bias, None, None,
                None, *grad_offsets)


def _write_offset_grads(grad_offsets: _Offsets, chunk: _Chunk, grad_grid: Tensor, n: int, h: int, w: int) -> None:
    """Writes the chunk's part of the offsets' gradients from that of its grid (N*g, 9*R, W, 2)."""
    num_rows = grad_grid.shape[1] // 9
    grad_grid = grad_grid.reshape(n, chunk.num_groups, 9, num_rows, w, 2)
    # grid = (2 p + 1) / size - 1 with p = base + tap + offset: d grid / d offset = 2 / size.
    chunk_grad = torch.stack((grad_grid[..., 1] / h * 2, grad_grid[..., 0] / w * 2), dim=3)  # (N, g, 9, 2, R, W)
    chunk_grad = chunk_grad.reshape(n, chunk.num_groups * 18, num_rows, w)
    if grad_offsets.offset is not None:
        chunk.part(grad_offsets.offset, 18).copy_(chunk_grad)
        return
    grad_matrix, grad_translation = _affine_offsets_backward(chunk_grad, chunk.num_groups)
    chunk.part(grad_offsets.matrix, 4).copy_(grad_matrix)
    chunk.part(grad_offsets.translation, 2).copy_(grad_translation)


class AdaptiveConv2d(nn.Module):
    """``groups`` independent adaptive 3x3 convolutions (no bias), side by side in one module.

    Per group: a 3x3 conv (with bias) predicts a 2x2 matrix, another a translation; they turn
    the regular grid into the sampling grid of a deformable 3x3 conv. With ``groups=K`` this is
    DEKR's K disentangled keypoint branches computed at once.

    Shapes: input (N, groups*in_per_group, H, W) -> output (N, groups*out_per_group, H, W).

    ``max_column_elements`` (an attribute, ``None`` by default) is passed to
    :func:`adaptive_conv2d` on the ``grid_sample`` backend: raise it where memory is plentiful and
    fewer, larger chunks are faster (small batches on a GPU).
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
        self.max_column_elements: int | None = None
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

    def forward(self, x: Tensor) -> Tensor:
        matrix, translation = self.transform_matrix_conv(x), self.translation_conv(x)
        if self.backend == "torchvision":
            offset = affine_grid_offsets(matrix, translation, self.groups)
            return tv_deform_conv2d(x, offset, self.weight, padding=self.dilation, dilation=self.dilation)
        return adaptive_conv2d(x, matrix, translation, self.weight, dilation=self.dilation,
                               max_column_elements=self.max_column_elements)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, dilation={self.dilation}, backend={self.backend!r}"
