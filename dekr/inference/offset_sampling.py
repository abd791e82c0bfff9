"""Where the adaptive convolutions of DEKR's offset head sample: the paper's figure of sampling points.

Each adaptive convolution (:class:`dekr.models.adaptive_conv.AdaptiveConv2d`) predicts, per pixel
and per keypoint branch, a 2x2 matrix M (acting on (y, x)) and a translation t = (ty, tx), and
samples its 3x3 kernel at the pixel plus ``dilation * G + (M @ G - G + t)``, G the regular grid
(:data:`~dekr.models.adaptive_conv.REGULAR_GRID`, taps row-major). This module reads M and t with
forward hooks on the convs' ``transform_matrix_conv`` and ``translation_conv`` (the model is not
changed) and turns them into sampling points at person centres.

Which points: **each adaptive conv's own 9 taps at the centre pixel** (one set per conv, in forward
order), not the 81 points of the stacked convs composed through one another. Both are taken at the
centre's output pixel, where the offsets of the persons are regressed, and they are exactly the
locations the convs read (the second conv reads the first conv's *output* at its 9 points).

Coordinates: output-map pixel (x, y) is input pixel ``(stride * x, stride * y)``, the convention
of :mod:`dekr.inference.decode` (official: output pixel i lies at input pixel 4i), and fractional
sampling points map the same way; :func:`image_offset_sampling` then maps the scale-1 input
canvas back to the original image with :meth:`ResizeInfo.to_original`, as the poses are.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from dekr.data.spec import KeypointSpec
from dekr.inference.config import DecodeConfig
from dekr.inference.decode import flip_heatmaps_back
from dekr.inference.nms import center_nms
from dekr.inference.predict import run_net
from dekr.inference.preprocess import check_image, resize_image, resize_info, to_input_tensor
from dekr.models.adaptive_conv import REGULAR_GRID, AdaptiveConv2d, affine_grid_offsets
from dekr.models.dekr import OUTPUT_STRIDE
from dekr.models.offset_blocks import OffsetBlock


class NoAdaptiveConvError(ValueError):
    """The network's offset head has no adaptive convolution (``offset_block`` basic, deformable, ...)."""


@dataclass
class AffineMaps:
    """What one adaptive conv predicted over a batch.

    Attributes:
        matrix: (N, 4G, h, w), per branch the row-major 2x2 matrix acting on (y, x).
        translation: (N, 2G, h, w), per branch (ty, tx) in output-map pixels.
        groups: G, the keypoint branches (K when disentangled, else 1).
        dilation: the conv's dilation.
    """

    matrix: Tensor
    translation: Tensor
    groups: int
    dilation: int


@dataclass
class OffsetSampling:
    """Person centres of one image and the sampling points of the adaptive convs there.

    Attributes:
        centers: (P, 2) float32, (x, y) in original image pixels.
        center_scores: (P,) float32, centre heatmap value (flip-averaged when flip testing).
        points: (P, G, L, 9, 2) float32, (x, y) in original image pixels: centre p, branch g
            (keypoint g when the head is disentangled; one shared branch otherwise), adaptive conv
            l in forward order, tap t row-major over the 3x3 kernel (tap 4 is the centre tap).
    """

    centers: np.ndarray
    center_scores: np.ndarray
    points: np.ndarray

    def __len__(self) -> int:
        return len(self.center_scores)


def adaptive_convs(net: nn.Module) -> list[AdaptiveConv2d]:
    """The adaptive convs of ``net.offset_head`` (a ``DEKRNet``, or a module holding it as ``net``),
    in forward order; :class:`NoAdaptiveConvError` when there is none."""
    head = getattr(net, "offset_head", None)
    if head is None:  # a DEKRModule holds the network as ``net``
        head = getattr(getattr(net, "net", None), "offset_head", None)
    if head is None:
        raise NoAdaptiveConvError(f"{type(net).__name__} has no offset_head: offset sampling needs a DEKRNet "
                                  "(a PyTorch network, not an exported ONNX model)")
    convs = [m for m in head.modules() if isinstance(m, AdaptiveConv2d)]
    if not convs:
        blocks = sorted({type(m).__name__ for m in head.modules() if isinstance(m, OffsetBlock)})
        raise NoAdaptiveConvError(f"this network's offset head has no adaptive convolutions (its offset blocks: "
                                  f"{', '.join(blocks) or 'none'}; model.net.offset_block adaptive has them): "
                                  "there are no affine sampling points to show")
    return convs


@contextlib.contextmanager
def record_affine_maps(net: nn.Module) -> Iterator[list[AffineMaps]]:
    """Within the block, every forward pass of ``net`` appends one :class:`AffineMaps` per adaptive
    conv, in forward order (forward hooks on its ``transform_matrix_conv`` and ``translation_conv``,
    removed on exit); the functions below run one pass per block."""
    convs = adaptive_convs(net)
    recorded: list[AffineMaps] = []
    pending: dict[int, Tensor] = {}
    handles = []

    def on_matrix(index: int):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            pending[index] = output.detach()
        return hook

    def on_translation(index: int, conv: AdaptiveConv2d):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            recorded.append(AffineMaps(pending.pop(index), output.detach(), conv.groups, conv.dilation))
        return hook

    try:
        for i, conv in enumerate(convs):
            handles.append(conv.transform_matrix_conv.register_forward_hook(on_matrix(i)))
            handles.append(conv.translation_conv.register_forward_hook(on_translation(i, conv)))
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def sampling_points(maps: AffineMaps, pixels: Tensor) -> Tensor:
    """Sampling points of one adaptive conv at given output pixels.

    Args:
        maps: the conv's predicted matrix and translation over a batch.
        pixels: (P, 3) long, (image index in the batch, x, y) in output-map pixels.

    Returns:
        (P, G, 9, 2) float, (x, y) in output-map pixels: ``pixel + dilation * G + (M @ G - G + t)``
        per tap (row-major), exactly where the conv's bilinear sampling reads.
    """
    n, y, x = pixels[:, 0], pixels[:, 2], pixels[:, 1]
    matrix = maps.matrix[n, :, y, x].float()[..., None, None]  # (P, 4G, 1, 1)
    translation = maps.translation[n, :, y, x].float()[..., None, None]
    offsets = affine_grid_offsets(matrix, translation, maps.groups)  # (P, 18G, 1, 1), (dy, dx) per tap
    offsets = offsets.reshape(len(pixels), maps.groups, 9, 2).flip(-1)  # (x, y)
    taps = REGULAR_GRID.to(offsets).t().flip(-1) * maps.dilation  # (9, 2) (x, y)
    return pixels[:, None, None, 1:].to(offsets) + taps + offsets


def adaptive_sampling_points(net: nn.Module, images: Tensor, centers: Tensor, image_index: Tensor | None = None,
                             stride: int = OUTPUT_STRIDE) -> Tensor:
    """Sampling points of every adaptive conv of every keypoint branch at given centres.

    Args:
        net: a ``DEKRNet`` (in eval mode for inference).
        images: (N, 3, H, W) network input.
        centers: (P, 2) (x, y) in input pixels; each is read at the output pixel nearest to
            ``center / stride`` (clamped to the map).
        image_index: (P,) the image of each centre (default: all in image 0).
        stride: output stride of the heads.

    Returns:
        (P, G, L, 9, 2) (x, y) in input pixels (``stride *`` output-map coordinates): G branches
        (K when disentangled), L adaptive convs in forward order, 9 taps row-major.
    """
    with torch.no_grad(), record_affine_maps(net) as recorded:
        net.forward(images)  # not net(...): see image_offset_sampling
    h, w = recorded[0].matrix.shape[-2:]
    index = torch.zeros(len(centers), dtype=torch.long) if image_index is None else image_index.long().cpu()
    xy = (centers.detach().float().cpu() / stride).round().long()
    pixels = torch.stack((index, xy[:, 0].clamp(0, w - 1), xy[:, 1].clamp(0, h - 1)), dim=1)
    return _points_at(recorded, pixels) * stride


def _points_at(recorded: list[AffineMaps], pixels: Tensor) -> Tensor:
    """(P, G, L, 9, 2) output-map points of all recorded convs at ``pixels`` (P, 3)."""
    pixels = pixels.to(recorded[0].matrix.device)
    return torch.stack([sampling_points(maps, pixels) for maps in recorded], dim=2).cpu()


def image_offset_sampling(net: nn.Module, image: np.ndarray, spec: KeypointSpec, cfg: DecodeConfig | None = None,
                          min_score: float | None = None, max_centers: int | None = None) -> OffsetSampling:
    """Person centres of one image and the sampling points of the adaptive convs at each.

    The centres are those :func:`dekr.inference.decode.decode_scale` regresses poses from at scale 1:
    the local maxima of the centre heatmap (flip-averaged when ``cfg.flip_test``) over ``min_score``
    (default ``cfg.keypoint_threshold``), best first, at most ``max_centers`` (default
    ``cfg.max_num_people``), before pose NMS. The points are those of the unflipped pass.

    Args:
        net: a ``DEKRNet`` with adaptive convs, in eval mode.
        image: (H, W, 3) uint8 RGB.
        spec: keypoint spec (flip index for the flip test).
        cfg: decoding options (input size, resize, flip test, centre NMS); default: the spec's official ones.

    Returns:
        centres, scores and points in original image pixels.
    """
    cfg = cfg or DecodeConfig.for_dataset(spec)
    check_image(image)
    info = resize_info(image.shape[0], image.shape[1], cfg.input_size, cfg.resize)
    canvas = resize_image(image, info, 1.0, cfg.pad_value)
    batch = to_input_tensor([canvas], next(net.parameters()).device, None, cfg.channel_order, cfg.pad_value)
    # net.forward, not net(...): a network compiled in place (nn.Module.compile) would run its
    # compiled graph, which need not call the hooks; the convs inside are plain modules either way.
    with record_affine_maps(net) as recorded:
        heatmaps, _, heatmaps_flipped, _ = run_net(net.forward, batch, cfg)
    if heatmaps_flipped is not None:
        heatmaps = (heatmaps + flip_heatmaps_back(heatmaps_flipped, spec.flip_index)) / 2.0
    threshold = cfg.keypoint_threshold if min_score is None else min_score
    scores, index, valid = center_nms(heatmaps[:, -1], max_centers or cfg.max_num_people, threshold,
                                      cfg.pool_thresholds)
    scores, index = scores[0][valid[0]], index[0][valid[0]]
    w = heatmaps.shape[-1]
    pixels = torch.stack((torch.zeros_like(index), index % w, torch.div(index, w, rounding_mode="floor")), dim=1)
    stride = cfg.output_stride
    # The flipped half of a flip-test batch (rows N..2N) is not read: rows 0..N-1 are the image.
    points = _points_at(recorded, pixels.cpu()) * stride  # (P, G, L, 9, 2) base input pixels
    centers = pixels[:, 1:].float().cpu() * stride
    return OffsetSampling(info.to_original(centers).numpy().astype(np.float32),
                          scores.float().cpu().numpy(), info.to_original(points).numpy().astype(np.float32))
