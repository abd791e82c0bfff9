"""From DEKR outputs to pose proposals, batched over images (official test semantics).

Frames: *output* = head resolution (1/4 of the input) at one test scale; *base input* = input
pixels of the scale-1 canvas (what ``ResizeInfo.to_original`` maps back). Output pixel i lies at
input pixel ``stride * i`` (the official convention), so a pose at scale s is
``(stride / s) * output coordinates`` in base input pixels.

Per scale (:func:`decode_scale`): flip-average the heatmaps (channels reordered with the spec's
flip index, the center last), find centers by max-pool NMS on the center heatmap (top-k,
threshold), and read the pose at each center pixel: keypoint = pixel - offset, averaged with the
flipped pass's pose at the mirrored pixel. Only the offsets at the selected centers are touched
(the official code builds full pose maps first; the result is the same).

Across scales (:func:`aggregate_scales`): keypoint scores read the scale-averaged heatmaps at the
floored, clamped base-input pixel, exactly as the official bilinear ``up_interpolate`` of every
scale's heatmaps to the base input size would give, but sampled only where needed; scores of the
other scales are rescaled to scale 1's maximum times ``decrease``; all proposals are pooled for
pose NMS.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dekr.inference.nms import center_nms


@dataclass
class ScaleProposals:
    """Proposals of one test scale for a batch of N images.

    Attributes:
        poses: (N, P, K, 2) keypoints in base input pixels.
        center_scores: (N, P) center heatmap value.
        valid: (N, P).
        heatmaps: (N, K+1, h, w) flip-averaged heatmaps at this scale (output resolution).
        upsample: factor from this scale's output pixels to base input pixels (stride / scale).
    """

    poses: Tensor
    center_scores: Tensor
    valid: Tensor
    heatmaps: Tensor
    upsample: float


def flip_heatmaps_back(heatmaps_flipped: Tensor, flip_index: list[int]) -> Tensor:
    """(N, K+1, h, w) heatmaps of the flipped image -> unflipped frame (mirror, swap left/right)."""
    heat_index = list(flip_index) + [len(flip_index)]
    return heatmaps_flipped.flip(-1)[:, heat_index]


def poses_at_pixels(offsets: Tensor, index: Tensor) -> Tensor:
    """Keypoints regressed at given pixels: pixel - offset.

    Args:
        offsets: (N, 2K, h, w), (x, y) per keypoint.
        index: (N, P) flat pixel indices into h*w.

    Returns:
        (N, P, K, 2) in output coordinates.
    """
    n, c, h, w = offsets.shape
    k = c // 2
    picked = offsets.reshape(n, c, h * w).gather(2, index[:, None, :].expand(n, c, index.shape[1]))
    picked = picked.view(n, k, 2, -1).permute(0, 3, 1, 2)  # (N, P, K, 2)
    pixel = torch.stack((index % w, torch.div(index, w, rounding_mode="floor")), dim=-1).to(offsets.dtype)
    return pixel[:, :, None, :] - picked


def decode_scale(heatmaps: Tensor, offsets: Tensor, scale: float, stride: int, max_num: int, threshold: float,
                 pool_thresholds: tuple[float, float], flip_index: list[int] | None = None,
                 heatmaps_flipped: Tensor | None = None, offsets_flipped: Tensor | None = None,
                 flip_shift: int = 3, valid_size: Tensor | None = None) -> ScaleProposals:
    """Center NMS + pose regression at one scale.

    Args:
        heatmaps, offsets: (N, K+1, h, w), (N, 2K, h, w) network outputs for the image.
        heatmaps_flipped, offsets_flipped: outputs for the horizontally flipped image (flip test).
        flip_shift: input pixels the flipped image was shifted left by (official 3).
        valid_size: (N, 2) (w, h) of each image's own output map when the batch was padded;
            centers outside are ignored.
    """
    heatmaps = heatmaps.float()
    offsets = offsets.float()
    if heatmaps_flipped is not None:
        assert flip_index is not None and offsets_flipped is not None
        heatmaps = (heatmaps + flip_heatmaps_back(heatmaps_flipped.float(), flip_index)) / 2.0
    n, _, h, w = heatmaps.shape
    center = heatmaps[:, -1]
    if valid_size is not None:
        xs = torch.arange(w, device=center.device)
        ys = torch.arange(h, device=center.device)
        inside = (xs[None, None, :] < valid_size[:, None, None, 0]) & (ys[None, :, None] < valid_size[:, None, None, 1])
        center = center * inside
    scores, index, valid = center_nms(center, max_num, threshold, pool_thresholds)
    poses = poses_at_pixels(offsets, index)
    if heatmaps_flipped is not None:
        # The pose at pixel (x, y) averages the flipped pass's pose at the mirrored pixel (w-1-x, y),
        # mapped back: left/right swapped, x -> (W_in - 1 - shift) / stride - x (= w - 1 - x officially).
        x, y = index % w, torch.div(index, w, rounding_mode="floor")
        poses_f = poses_at_pixels(offsets_flipped.float(), y * w + (w - 1 - x))[:, :, flip_index]
        mirror = (w * stride - 1 - flip_shift) / stride
        poses_f = torch.stack((mirror - poses_f[..., 0], poses_f[..., 1]), dim=-1)
        poses = (poses + poses_f) / 2.0
    upsample = stride / scale
    return ScaleProposals(poses * upsample, scores, valid, heatmaps, upsample)


def _upsampled_source(coord: Tensor, size_in: int, upsample: float) -> Tensor:
    """Source coordinate that the official ``up_interpolate`` samples for output pixel ``coord``.

    ``up_interpolate`` resizes (align_corners=True) to ``U - r + 1`` pixels, with
    ``U = int(upsample * size_in)`` and ``r = int(U / size_in)``, then replicates the last row/column
    ``r - 1`` times.
    """
    u = int(upsample * size_in)
    r = int(u / size_in)
    span = u - r
    if span <= 0:
        return torch.zeros_like(coord)
    return coord.clamp(max=span) * ((size_in - 1) / span)


def heat_values(proposals: list[ScaleProposals], poses: Tensor, base_size: tuple[int, int]) -> Tensor:
    """Scale-averaged keypoint heatmap values at the floored, clamped base-input pixel of each keypoint.

    Args:
        proposals: the per-scale outputs (their ``heatmaps`` and ``upsample``).
        poses: (N, Q, K, 2) in base input pixels.
        base_size: (W, H) of the base input canvas.

    Returns:
        (N, Q, K).
    """
    n, q, k, _ = poses.shape
    big_w, big_h = base_size
    px = poses[..., 0].floor().clamp(0, big_w - 1)
    py = poses[..., 1].floor().clamp(0, big_h - 1)
    total = poses.new_zeros((n, q, k))
    for prop in proposals:
        hm = prop.heatmaps[:, :k]
        h, w = hm.shape[-2:]
        sx = _upsampled_source(px, w, prop.upsample)
        sy = _upsampled_source(py, h, prop.upsample)
        x0, y0 = sx.floor(), sy.floor()
        wx, wy = sx - x0, sy - y0
        x0, y0 = x0.long().clamp(0, w - 1), y0.long().clamp(0, h - 1)
        x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
        flat = hm.reshape(n, k, h * w)

        def at(yy: Tensor, xx: Tensor) -> Tensor:
            idx = (yy * w + xx).permute(0, 2, 1)  # (N, K, Q)
            return flat.gather(2, idx).permute(0, 2, 1)  # (N, Q, K)

        top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
        bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
        total = total + top * (1 - wy) + bottom * wy
    return total / len(proposals)


def upsampled_heatmaps(proposals: list[ScaleProposals]) -> Tensor:
    """The official scale-averaged heatmaps at base input resolution (N, K+1, H, W) (match_heatmap only)."""
    total = None
    for prop in proposals:
        hm = prop.heatmaps
        h, w = hm.shape[-2:]
        u_h, u_w = int(prop.upsample * h), int(prop.upsample * w)
        r_h, r_w = int(u_h / h), int(u_w / w)
        up = F.interpolate(hm, size=(u_h - r_h + 1, u_w - r_w + 1), mode="bilinear", align_corners=True)
        up = F.pad(up, (0, r_w - 1, 0, r_h - 1), mode="replicate")
        total = up if total is None else total + up
    assert total is not None
    return total / len(proposals)


def aggregate_scales(proposals: list[ScaleProposals], scales: list[float], decrease: float
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """Pool the proposals of all scales (in the given order), rescaling the other scales' scores.

    Returns:
        poses (N, Q, K, 2), center scores (N, Q), valid (N, Q).
    """
    ref = scales.index(1.0)

    def max_score(prop: ScaleProposals) -> Tensor:
        s = torch.where(prop.valid, prop.center_scores, torch.full_like(prop.center_scores, -float("inf")))
        m = s.amax(dim=1) if s.shape[1] else s.new_full((s.shape[0],), -float("inf"))
        return torch.where(torch.isfinite(m), m, torch.ones_like(m))

    ref_max = max_score(proposals[ref])
    scores = []
    for i, prop in enumerate(proposals):
        if i == ref:
            scores.append(prop.center_scores)
        else:
            scores.append(prop.center_scores / max_score(prop)[:, None] * ref_max[:, None] * decrease)
    poses = torch.cat([p.poses for p in proposals], dim=1)
    valid = torch.cat([p.valid for p in proposals], dim=1)
    return poses, torch.cat(scores, dim=1), valid


def absorb_to_peaks(poses: Tensor, heatmaps_up: Tensor, max_num: int, max_distance: float) -> Tensor:
    """Official MATCH_HMP absorb step: move each keypoint to the nearest of its heatmap's top
    ``max_num`` local maxima (max-pool 5) closer than ``max_distance``.

    Unlike the official code, zero-valued "peaks" (when a heatmap has fewer maxima than
    ``max_num``) are not candidates.

    Args:
        poses: (P, K, 2) base input pixels; heatmaps_up: (K+1, H, W) at base input resolution.
    """
    k = poses.shape[1]
    hm = heatmaps_up[None, :k]
    # 5x5 max-pool as 1x5 then 5x1 (identical: a max over a rectangle is separable), faster on
    # the (K, H, W) input-resolution maps
    pooled = F.max_pool2d(F.max_pool2d(hm, (1, 5), stride=1, padding=(0, 2)), (5, 1), stride=1, padding=(2, 0))
    peaks = (hm * (pooled == hm))[0].reshape(k, -1)
    values, index = peaks.topk(min(max_num, peaks.shape[1]), dim=1)  # (K, M)
    w = heatmaps_up.shape[-1]
    peak_xy = torch.stack((index % w, torch.div(index, w, rounding_mode="floor")), -1).to(poses.dtype)  # (K, M, 2)
    dist = (poses[:, :, None, :] - peak_xy[None]).norm(dim=-1)  # (P, K, M)
    dist = dist.masked_fill(~(values > 0)[None], float("inf"))
    best, arg = dist.min(dim=-1)  # (P, K)
    target = peak_xy[torch.arange(k, device=poses.device)[None, :].expand_as(arg), arg]  # (P, K, 2)
    return torch.where((best < max_distance)[..., None], target, poses)
