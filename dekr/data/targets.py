"""DEKR training targets: keypoint + centre heatmaps, their loss weights, offset maps and weights.

Two implementations of the same maths, both vectorised (no Python loop over pixels, persons or
keypoints):

* :func:`build_targets` (numpy) for one sample, used in data workers;
* :func:`build_targets_torch` (torch, device-agnostic) for a padded batch, so that with
  ``gpu_targets`` the workers only decode and warp and the maps are built on the accelerator.

Inputs are keypoints already in output-map coordinates (see ``transforms.py``):
``joints`` (P, K+1, 3) = (x, y, v) per person, the K keypoints then the person centre; v > 0 means
labelled (the warp sets v = 0 for points that left the map). ``area`` (P,) is the person size
used for the offset weight (see ``dataset.person_area``), ``mask`` (R, R) is 1 where the loss
counts, 0 in ignore regions.

Semantics (shared/docs/dekr_recipe.md):

* heatmap[k] = max over persons of exp(-d^2 / (2 sigma^2)), evaluated on integer pixels within
  [x - 3 sigma - 1, x + 3 sigma + 2); sigma = ``sigma`` for keypoints, ``center_sigma`` for the
  centre; points outside the map are skipped.
* heatmap_weight = (1 inside any drawn window, ``bg_weight`` elsewhere) x mask.
* for a person whose (integer) centre lies in the map, every pixel of the window
  [c - radius, c + radius) (clipped) gets, for each labelled keypoint in the map,
  offset = pixel - keypoint and weight 1 / sqrt(area). Where windows overlap, per keypoint
  channel, the person with the smaller area wins (on equal areas the later person, as in the
  official code).

Official quirks (``official_quirks=True``): the official code chooses a channel's sigma by
``index < 17``, so for CrowdPose (K = 14) the centre gets sigma 2; and it truncates the centre
towards zero (``int()``) where we floor. The official overlap test additionally shares one
area map across keypoint channels and treats an exact zero offset as "not written", which makes
the result depend on annotation order; we implement the order-independent rule it approximates
(identical whenever overlapping persons have the same labelled keypoints).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TargetConfig:
    """Target hyper-parameters (official defaults)."""

    sigma: float = 2.0
    center_sigma: float = 4.0
    bg_weight: float = 0.1
    offset_radius: int = 4
    official_quirks: bool = False

    def channel_sigmas(self, num_keypoints: int) -> np.ndarray:
        """(K+1,) Gaussian sigma per heatmap channel."""
        k1 = num_keypoints + 1
        if self.official_quirks:
            return np.array([self.sigma if i < 17 else self.center_sigma for i in range(k1)],
                            dtype=np.float64)
        return np.array([self.sigma] * num_keypoints + [self.center_sigma], dtype=np.float64)


def _window_width(sigmas: np.ndarray) -> int:
    # ceil(x + 3s + 2) - floor(x - 3s - 1) <= 6s + 4 (+1 for rounding safety)
    return int(np.ceil(6 * sigmas.max() + 4)) + 1


def _priority(area: np.ndarray) -> np.ndarray:
    """Rank per person, 0 = wins overlaps: smaller area first, later person on ties."""
    p = len(area)
    order = np.lexsort((-np.arange(p), area))  # primary key area asc, secondary index desc
    rank = np.empty(p, dtype=np.int64)
    rank[order] = np.arange(p)
    return rank


def build_targets(joints: np.ndarray, area: np.ndarray, mask: np.ndarray | None, output_size: int,
                  config: TargetConfig | None = None) -> dict[str, np.ndarray]:
    """Targets for one sample (numpy).

    Args:
        joints: (P, K+1, 3) output-map (x, y, v), the centre last.
        area: (P,) person area for the offset weight (> 0).
        mask: (R, R) 1 = counts, 0 = ignore; None for all ones.
        output_size: R.
    Returns:
        ``heatmap`` (K+1, R, R), ``heatmap_weight`` (K+1, R, R), ``offset`` (2K, R, R),
        ``offset_weight`` (2K, R, R), all float32.
    """
    cfg = config or TargetConfig()
    joints = np.asarray(joints, dtype=np.float64)
    area = np.asarray(area, dtype=np.float64).reshape(-1)
    r = int(output_size)
    p, k1 = joints.shape[0], joints.shape[1]
    k = k1 - 1
    rr = r * r
    heatmap = np.zeros(k1 * rr, dtype=np.float32)
    drawn = np.zeros(k1 * rr, dtype=bool)
    offset = np.zeros((k, 2, rr), dtype=np.float32)
    offset_weight = np.zeros((k, 2, rr), dtype=np.float32)

    if p > 0:
        x, y, v = joints[..., 0], joints[..., 1], joints[..., 2]
        inside = (v > 0) & (x >= 0) & (y >= 0) & (x < r) & (y < r)

        # ---- heatmaps: one (W, W) window per labelled point, scatter-max into the maps
        sigmas = cfg.channel_sigmas(k)
        pi, ki = np.nonzero(inside)
        if len(pi):
            xs, ys, s = x[pi, ki], y[pi, ki], sigmas[ki]
            w = _window_width(sigmas)
            steps = np.arange(w)
            ul_x, ul_y = np.floor(xs - 3 * s - 1), np.floor(ys - 3 * s - 1)
            br_x, br_y = np.ceil(xs + 3 * s + 2), np.ceil(ys + 3 * s + 2)
            gx = ul_x[:, None] + steps  # (M, W) integer pixel columns
            gy = ul_y[:, None] + steps
            ok_x = (gx < br_x[:, None]) & (gx >= 0) & (gx < r)
            ok_y = (gy < br_y[:, None]) & (gy >= 0) & (gy < r)
            two_s2 = (2 * s * s)[:, None]
            ex = np.exp(-((gx - xs[:, None]) ** 2) / two_s2)
            ey = np.exp(-((gy - ys[:, None]) ** 2) / two_s2)
            values = ey[:, :, None] * ex[:, None, :]  # (M, W, W)
            ok = ok_y[:, :, None] & ok_x[:, None, :]
            flat = (ki[:, None, None] * rr + gy[:, :, None].astype(np.int64) * r
                    + gx[:, None, :].astype(np.int64))
            flat, values = flat[ok], values[ok].astype(np.float32)
            np.maximum.at(heatmap, flat, values)
            drawn[flat] = True

        # ---- offsets: each person's centre window, per keypoint channel the smallest person wins
        cx = np.trunc(x[:, -1]) if cfg.official_quirks else np.floor(x[:, -1])
        cy = np.trunc(y[:, -1]) if cfg.official_quirks else np.floor(y[:, -1])
        center_ok = (v[:, -1] > 0) & (cx >= 0) & (cy >= 0) & (cx < r) & (cy < r)
        kp_ok = inside[:, :k] & center_ok[:, None]
        pi, ki = np.nonzero(kp_ok)
        if len(pi):
            rad = int(cfg.offset_radius)
            steps = np.arange(-rad, rad)
            px = cx[pi][:, None] + steps  # (M, 2 rad)
            py = cy[pi][:, None] + steps
            ok = (((px >= 0) & (px < r))[:, None, :]) & (((py >= 0) & (py < r))[:, :, None])
            pix = py[:, :, None].astype(np.int64) * r + px[:, None, :].astype(np.int64)  # (M, 2rad, 2rad)
            key = ki[:, None, None] * rr + pix
            rank = _priority(area)[pi][:, None, None]
            rank_b = np.broadcast_to(rank, key.shape)
            key_ok, rank_ok = key[ok], rank_b[ok]
            best = np.full(k * rr, np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(best, key_ok, rank_ok)
            win = best[key_ok] == rank_ok
            m_idx = np.broadcast_to(np.arange(len(pi))[:, None, None], key.shape)[ok][win]
            key_w = key_ok[win]
            kw, pw = key_w // rr, key_w % rr
            dx = (pw % r) - x[pi[m_idx], ki[m_idx]]
            dy = (pw // r) - y[pi[m_idx], ki[m_idx]]
            wgt = 1.0 / np.sqrt(area[pi[m_idx]])
            offset[kw, 0, pw] = dx
            offset[kw, 1, pw] = dy
            offset_weight[kw, 0, pw] = wgt
            offset_weight[kw, 1, pw] = wgt

    weight = np.where(drawn, np.float32(1.0), np.float32(cfg.bg_weight)).reshape(k1, r, r)
    if mask is not None:
        weight = weight * mask.astype(np.float32)[None]
    return {
        "heatmap": heatmap.reshape(k1, r, r),
        "heatmap_weight": weight.astype(np.float32, copy=False),
        "offset": offset.reshape(2 * k, r, r),
        "offset_weight": offset_weight.reshape(2 * k, r, r),
    }


def build_targets_torch(joints: torch.Tensor, area: torch.Tensor, mask: torch.Tensor | None, output_size: int,
                        config: TargetConfig | None = None) -> dict[str, torch.Tensor]:
    """Batched targets on any device; equal to :func:`build_targets` per sample.

    Args:
        joints: (N, P, K+1, 3) output-map (x, y, v), padded with v = 0 persons.
        area: (N, P) offset-weight area (any positive value for padding).
        mask: (N, R, R) 1 = counts, 0 = ignore, or None.
        output_size: R.
    Returns:
        ``heatmap`` (N, K+1, R, R), ``heatmap_weight`` (N, K+1, R, R), ``offset`` (N, 2K, R, R),
        ``offset_weight`` (N, 2K, R, R), float32 on ``joints.device``.
    """
    cfg = config or TargetConfig()
    device = joints.device
    # float64 where the device has it (CPU, CUDA) so that results match the numpy path to 1e-6
    ftype = torch.float32 if device.type == "mps" else torch.float64
    joints = joints.to(ftype)
    area = area.to(ftype)
    n, p, k1 = joints.shape[0], joints.shape[1], joints.shape[2]
    k = k1 - 1
    r = int(output_size)
    rr = r * r
    heatmap = torch.zeros(n * k1 * rr, dtype=torch.float32, device=device)
    drawn = torch.zeros(n * k1 * rr, dtype=torch.bool, device=device)
    offset = torch.zeros(n * k * 2 * rr, dtype=torch.float32, device=device)
    offset_weight = torch.zeros(n * k * 2 * rr, dtype=torch.float32, device=device)

    if p > 0 and n > 0:
        x, y, v = joints[..., 0], joints[..., 1], joints[..., 2]
        inside = (v > 0) & (x >= 0) & (y >= 0) & (x < r) & (y < r)
        sigmas_np = cfg.channel_sigmas(k)
        sigmas = torch.as_tensor(sigmas_np, dtype=ftype, device=device)

        ni, pi, ki = torch.nonzero(inside, as_tuple=True)
        if ni.numel():
            xs, ys, s = x[ni, pi, ki], y[ni, pi, ki], sigmas[ki]
            steps = torch.arange(_window_width(sigmas_np), device=device, dtype=ftype)
            ul_x, ul_y = torch.floor(xs - 3 * s - 1), torch.floor(ys - 3 * s - 1)
            br_x, br_y = torch.ceil(xs + 3 * s + 2), torch.ceil(ys + 3 * s + 2)
            gx = ul_x[:, None] + steps
            gy = ul_y[:, None] + steps
            ok_x = (gx < br_x[:, None]) & (gx >= 0) & (gx < r)
            ok_y = (gy < br_y[:, None]) & (gy >= 0) & (gy < r)
            two_s2 = (2 * s * s)[:, None]
            ex = torch.exp(-((gx - xs[:, None]) ** 2) / two_s2)
            ey = torch.exp(-((gy - ys[:, None]) ** 2) / two_s2)
            values = (ey[:, :, None] * ex[:, None, :]).to(torch.float32)
            ok = ok_y[:, :, None] & ok_x[:, None, :]
            flat = ((ni * k1 + ki)[:, None, None] * rr + gy[:, :, None].long() * r + gx[:, None, :].long())
            flat, values = flat[ok], values[ok]
            heatmap.scatter_reduce_(0, flat, values, reduce="amax", include_self=True)
            drawn[flat] = True

        if cfg.official_quirks:
            cx, cy = torch.trunc(x[..., -1]), torch.trunc(y[..., -1])
        else:
            cx, cy = torch.floor(x[..., -1]), torch.floor(y[..., -1])
        center_ok = (v[..., -1] > 0) & (cx >= 0) & (cy >= 0) & (cx < r) & (cy < r)
        kp_ok = inside[..., :k] & center_ok[..., None]
        ni, pi, ki = torch.nonzero(kp_ok, as_tuple=True)
        if ni.numel():
            rad = int(cfg.offset_radius)
            steps = torch.arange(-rad, rad, device=device, dtype=ftype)
            px = cx[ni, pi][:, None] + steps
            py = cy[ni, pi][:, None] + steps
            ok = ((px >= 0) & (px < r))[:, None, :] & ((py >= 0) & (py < r))[:, :, None]
            pix = py[:, :, None].long() * r + px[:, None, :].long()
            key = (ni * k + ki)[:, None, None] * rr + pix
            # rank within each image: smaller area first, later person on ties
            reverse = torch.arange(p - 1, -1, -1, device=device)
            order = reverse[torch.argsort(area[:, reverse], dim=1, stable=True)]  # priority order per image
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(p, device=device).expand(n, p).contiguous())
            rank_m = rank[ni, pi][:, None, None].expand_as(key)
            key_ok, rank_ok = key[ok], rank_m[ok]
            best = torch.full((n * k * rr,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=device)
            best.scatter_reduce_(0, key_ok, rank_ok, reduce="amin", include_self=True)
            win = best[key_ok] == rank_ok
            m_idx = torch.arange(ni.numel(), device=device)[:, None, None].expand_as(key)[ok][win]
            key_w = key_ok[win]
            pw = key_w % rr
            nk = key_w // rr  # = n * k + keypoint
            dx = (pw % r).to(ftype) - x[ni[m_idx], pi[m_idx], ki[m_idx]]
            dy = (pw // r).to(ftype) - y[ni[m_idx], pi[m_idx], ki[m_idx]]
            wgt = (1.0 / torch.sqrt(area[ni[m_idx], pi[m_idx]])).to(torch.float32)
            base = nk * (2 * rr) + pw  # channel 2k of image n sits at (n*k + k') * 2 rr
            offset[base] = dx.to(torch.float32)
            offset[base + rr] = dy.to(torch.float32)
            offset_weight[base] = wgt
            offset_weight[base + rr] = wgt

    background = torch.full((), float(cfg.bg_weight), device=device)
    weight = torch.where(drawn, torch.ones((), device=device), background)
    weight = weight.view(n, k1, r, r)
    if mask is not None:
        weight = weight * mask.to(device=device, dtype=torch.float32)[:, None]
    return {
        "heatmap": heatmap.view(n, k1, r, r),
        "heatmap_weight": weight,
        "offset": offset.view(n, 2 * k, r, r),
        "offset_weight": offset_weight.view(n, 2 * k, r, r),
    }
