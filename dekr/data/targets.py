"""DEKR training targets: keypoint + centre heatmaps, their loss weights, offset maps and weights.

Two implementations of the same maths, both vectorised (no Python loop over pixels, persons or
keypoints; the official overlap rule loops over overlap depth, a few steps, see below):

* :func:`build_targets` (numpy) for one sample, used in data workers;
* :func:`build_targets_torch` (torch, device-agnostic) for a padded batch, so that with
  ``gpu_targets`` the workers only decode and warp and the maps are built on the accelerator.

Inputs are keypoints already in output-map coordinates (see ``transforms.py``):
``joints`` (P, K+1, 3) = (x, y, v) per person, the K keypoints then the person centre; v > 0 means
labelled (the sound warp sets v = 0 for points that left the map, the official one keeps v).
``area`` (P,) is the person size used for the offset weight (see ``dataset.person_area``),
``mask`` (R, R) is 1 where the loss counts, 0 in ignore regions.

Semantics, default (``official_quirks=False``; the README's "Where we differ" table):

* heatmap[k] = max over persons of exp(-d^2 / (2 sigma^2)), evaluated on integer pixels within
  [x - 3 sigma - 1, x + 3 sigma + 2) (clipped to the map), computed in float64 and stored as
  float32; sigma = ``sigma`` for the K keypoints, ``center_sigma`` for the centre; a point is
  drawn when v > 0 and 0 <= x, y < R.
* heatmap_weight = (1 inside any drawn window, ``bg_weight`` elsewhere) x mask.
* a person whose centre is labelled (v > 0) and whose floored centre (cx, cy) lies in the map
  owns the window [cx - radius, cx + radius) x [cy - radius, cy + radius) (clipped): each of its
  labelled in-map keypoints gets offset = pixel - keypoint and weight 1 / sqrt(area) on both
  channels. Where windows overlap, per keypoint channel, the person with the smaller area wins
  (on equal areas the later person). The result does not depend on the annotation order.

Official quirks (``official_quirks=True``) reproduce HRNet/DEKR's ``HeatmapGenerator`` and
``OffsetGenerator`` (lib/dataset/target_generators) bit for bit (tested against the official
code's own targets on COCO and crowded CrowdPose crops, ``tests/fixtures/reference``):

* heatmaps: the sigma is chosen by channel index, ``sigma`` if index < 17 else ``center_sigma``,
  so with K < 17 (CrowdPose, K = 14) the centre gets ``sigma`` too. Window, skipping and weight
  are as above (they are the official ones).
* offsets, centre: truncated toward zero (``int()``), so a centre in (-1, 0) counts as inside the
  map and owns a window at 0; the centre counts as labelled when int(v) >= 1.
* offsets, overlaps: the official generator visits persons in annotation order, keypoints in
  index order, and writes keypoint k of person p at pixel q unless both (a) channel k at q is
  "written", i.e. its stored float32 (dx, dy) is not exactly (0, 0) (so a true (0, 0) offset
  counts as unwritten), and (b) ``area_map[q] < area[p]``. ``area_map`` is ONE float32 (R, R)
  map shared by all keypoints, set to float32(area[p]) on every write, and compared in float64
  with the float64 area. Consequences, all reproduced:

  - once person p wrote one keypoint at q, the map holds float32(area[p]); when float32 rounds
    the area down (float32(a) < a), p's later keypoints at q lose to whoever wrote them before,
    larger persons included (on real CrowdPose crops this is the shared-map effect that shows);
  - a larger later person that writes a keypoint the owner lacks raises the map to its own area
    and, unless float32 rounds that area down, also takes the later keypoints;
  - on equal areas the earlier person keeps the pixel when float32(a) < a, the later one takes
    it otherwise.

  The rule depends on the order, so it cannot be one scatter-min. We group the events
  (person, pixel) by overlap depth, the number of earlier persons whose window covers the same
  pixel, and run one vectorised step per depth (pixels are independent; the loop runs
  max-overlap times, 1-3 on the reference crops). Within a step, person p's writes over the
  keypoints follow in closed form: the first keypoint k0 writable against the map as it was
  (unwritten, or not ``area_map < area``) is written, then every later keypoint is written when
  unwritten or when not float32(area) < area (the map now holds float32(area)).

This needs float64 arithmetic (CPU, CUDA): on MPS (float32 only) the float32-versus-float64
area comparisons cannot be reproduced.
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


def _smallest_area_offsets(x: np.ndarray, y: np.ndarray, v: np.ndarray, inside: np.ndarray, area: np.ndarray,
                           r: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Default offsets: per keypoint channel and pixel the smallest person wins (ties: the later).

    Args and returns as :func:`_official_offsets`.
    """
    k, rr = x.shape[1] - 1, r * r
    offset = np.zeros((k, 2, rr), dtype=np.float32)
    offset_weight = np.zeros((k, 2, rr), dtype=np.float32)
    cx, cy = np.floor(x[:, -1]), np.floor(y[:, -1])
    center_ok = (v[:, -1] > 0) & (cx >= 0) & (cy >= 0) & (cx < r) & (cy < r)
    kp_ok = inside[:, :k] & center_ok[:, None]
    pi, ki = np.nonzero(kp_ok)
    if len(pi) == 0:
        return offset, offset_weight
    steps = np.arange(-radius, radius)
    px = cx[pi][:, None] + steps  # (M, 2 radius)
    py = cy[pi][:, None] + steps
    ok = (((px >= 0) & (px < r))[:, None, :]) & (((py >= 0) & (py < r))[:, :, None])
    pix = py[:, :, None].astype(np.int64) * r + px[:, None, :].astype(np.int64)  # (M, 2 radius, 2 radius)
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
    return offset, offset_weight


def _official_centres(x: np.ndarray, y: np.ndarray, v: np.ndarray, r: int) -> tuple[np.ndarray, ...]:
    """Official centre test: ``int()`` truncation (toward zero) of x, y and v.

    x, y, v: (..., K+1) with the centre last. Returns (cx, cy, ok), each (...,).
    """
    cx, cy = np.trunc(x[..., -1]), np.trunc(y[..., -1])
    ok = (np.trunc(v[..., -1]) >= 1) & (cx >= 0) & (cy >= 0) & (cx < r) & (cy < r)
    return cx, cy, ok


def _overlap_depth(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, depth): a stable sort of ``key`` and, in that order, each entry's rank among equal keys.

    The events come person by person, so within one pixel the stable order is the official
    person order and depth = how many earlier persons cover that pixel.
    """
    order = np.argsort(key, kind="stable")
    sk = key[order]
    idx = np.arange(len(sk))
    start = np.ones(len(sk), dtype=bool)
    start[1:] = sk[1:] != sk[:-1]
    return order, idx - np.maximum.accumulate(np.where(start, idx, 0))


def _official_offsets(x: np.ndarray, y: np.ndarray, v: np.ndarray, inside: np.ndarray, area: np.ndarray,
                      r: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """The official ``OffsetGenerator`` (order-dependent overlap rule, module docstring), vectorised.

    Args:
        x, y, v: (P, K+1) float64 output-map joints, the centre last.
        inside: (P, K+1) labelled and in the map.
        area: (P,) float64 person areas.
    Returns:
        offset, offset_weight: (K, 2, R*R) float32, channel (k, 0) = x, (k, 1) = y.
    """
    k, rr = x.shape[1] - 1, r * r
    offset = np.zeros((k, 2, rr), dtype=np.float32)
    weight = np.zeros((k, 2, rr), dtype=np.float32)
    cx, cy, center_ok = _official_centres(x, y, v, r)
    valid = inside[:, :k] & center_ok[:, None]  # (P, K) keypoints the person writes
    persons = np.nonzero(valid.any(1))[0]  # persons without one never touch the maps
    if len(persons) == 0:
        return offset, weight
    steps = np.arange(-radius, radius)
    px = cx[persons][:, None] + steps  # (M, 2 radius)
    py = cy[persons][:, None] + steps
    ok = ((px >= 0) & (px < r))[:, None, :] & ((py >= 0) & (py < r))[:, :, None]
    pix = py[:, :, None].astype(np.int64) * r + px[:, None, :].astype(np.int64)  # (M, 2 radius, 2 radius)
    ev_p = np.broadcast_to(persons[:, None, None], pix.shape)[ok]  # events (person, pixel), person-major
    ev_q = pix[ok]
    order, depth = _overlap_depth(ev_q)
    ev_p, ev_q = ev_p[order], ev_q[order]
    area_map = np.zeros(rr, dtype=np.float32)  # official: one map for all keypoints, float32
    # float32(area) >= area: once a person wrote a keypoint at q, the map holds float32(area), and
    # its later keypoints beat an earlier writer only if this holds (numpy compares in float64)
    keeps_writing = ~(area.astype(np.float32).astype(np.float64) < area)
    kk = np.arange(k)[:, None]
    for d in range(int(depth.max()) + 1):
        sel = depth == d  # at most one event per pixel: the pixels are independent
        ep, eq = ev_p[sel], ev_q[sel]
        a = area[ep]
        cur = offset[:, :, eq]  # (K, 2, E)
        unwritten = (cur[:, 0] == 0) & (cur[:, 1] == 0)  # quirk: an exact (0, 0) counts as unwritten
        val = valid[ep].T  # (K, E)
        writable = val & (unwritten | ~(area_map[eq].astype(np.float64) < a))
        first = np.where(writable, kk, k).min(0)  # first keypoint written at q (k: none)
        write = val & ((kk == first) | ((kk > first) & (unwritten | keeps_writing[ep])))
        wk, we = np.nonzero(write)
        wp, wq = ep[we], eq[we]
        offset[wk, 0, wq] = (wq % r) - x[wp, wk]
        offset[wk, 1, wq] = (wq // r) - y[wp, wk]
        w = (1.0 / np.sqrt(area[wp])).astype(np.float32)
        weight[wk, 0, wq] = w
        weight[wk, 1, wq] = w
        wrote = first < k
        area_map[eq[wrote]] = a[wrote]
    return offset, weight


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

        # ---- offsets: each person's centre window over its labelled in-map keypoints
        offsets = _official_offsets if cfg.official_quirks else _smallest_area_offsets
        offset, offset_weight = offsets(x, y, v, inside, area, r, int(cfg.offset_radius))

    weight = np.where(drawn, np.float32(1.0), np.float32(cfg.bg_weight)).reshape(k1, r, r)
    if mask is not None:
        weight = weight * mask.astype(np.float32)[None]
    return {
        "heatmap": heatmap.reshape(k1, r, r),
        "heatmap_weight": weight.astype(np.float32, copy=False),
        "offset": offset.reshape(2 * k, r, r),
        "offset_weight": offset_weight.reshape(2 * k, r, r),
    }


def _smallest_area_offsets_torch(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, inside: torch.Tensor,
                                 area: torch.Tensor, r: int,
                                 radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched :func:`_smallest_area_offsets`. x, y, v, inside: (N, P, K+1); area: (N, P).

    Returns offset, offset_weight: (N, K, 2, R*R) float32.
    """
    n, p, k = x.shape[0], x.shape[1], x.shape[2] - 1
    rr, device, ftype = r * r, x.device, x.dtype
    offset = torch.zeros(n * k * 2 * rr, dtype=torch.float32, device=device)
    offset_weight = torch.zeros(n * k * 2 * rr, dtype=torch.float32, device=device)
    cx, cy = torch.floor(x[..., -1]), torch.floor(y[..., -1])
    center_ok = (v[..., -1] > 0) & (cx >= 0) & (cy >= 0) & (cx < r) & (cy < r)
    kp_ok = inside[..., :k] & center_ok[..., None]
    ni, pi, ki = torch.nonzero(kp_ok, as_tuple=True)
    if ni.numel():
        steps = torch.arange(-radius, radius, device=device, dtype=ftype)
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
    return offset.view(n, k, 2, rr), offset_weight.view(n, k, 2, rr)


def _official_offsets_torch(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, inside: torch.Tensor,
                            area: torch.Tensor, r: int, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched :func:`_official_offsets`. x, y, v, inside: (N, P, K+1); area: (N, P).

    Returns offset, offset_weight: (N, K, 2, R*R) float32. Padding persons (v = 0) write nothing.
    """
    n, k = x.shape[0], x.shape[2] - 1
    rr, device, ftype = r * r, x.device, x.dtype
    offset = torch.zeros(n, k, 2, rr, dtype=torch.float32, device=device)
    weight = torch.zeros(n, k, 2, rr, dtype=torch.float32, device=device)
    cx, cy = torch.trunc(x[..., -1]), torch.trunc(y[..., -1])
    center_ok = (torch.trunc(v[..., -1]) >= 1) & (cx >= 0) & (cy >= 0) & (cx < r) & (cy < r)
    valid = inside[..., :k] & center_ok[..., None]  # (N, P, K) keypoints each person writes
    ni, pi = torch.nonzero(valid.any(-1), as_tuple=True)  # row-major: persons in official order per image
    if ni.numel() == 0:
        return offset, weight
    steps = torch.arange(-radius, radius, device=device, dtype=ftype)
    px = cx[ni, pi][:, None] + steps  # (M, 2 radius)
    py = cy[ni, pi][:, None] + steps
    ok = ((px >= 0) & (px < r))[:, None, :] & ((py >= 0) & (py < r))[:, :, None]
    pix = py[:, :, None].long() * r + px[:, None, :].long()  # (M, 2 radius, 2 radius)
    ev_m = torch.arange(ni.numel(), device=device)[:, None, None].expand_as(pix)[ok]
    ev_q = pix[ok]
    # one stable sort by (image, pixel): within a pixel the events keep the official person order
    order = torch.argsort(ni[ev_m] * rr + ev_q, stable=True)
    ev_m, ev_q = ev_m[order], ev_q[order]
    key = ni[ev_m] * rr + ev_q
    idx = torch.arange(key.numel(), device=device)
    start = torch.ones_like(key, dtype=torch.bool)
    start[1:] = key[1:] != key[:-1]
    depth = idx - torch.cummax(torch.where(start, idx, torch.zeros_like(idx)), 0).values
    ev_n, ev_p = ni[ev_m], pi[ev_m]
    area_map = torch.zeros(n, rr, dtype=torch.float32, device=device)  # one map for all keypoints
    # float32(area) >= area, compared in float64 as numpy does (see _official_offsets)
    keeps_writing = ~(area.to(torch.float32).to(ftype) < area)
    kk = torch.arange(k, device=device)
    for d in range(int(depth.max()) + 1):
        sel = depth == d  # at most one event per (image, pixel)
        en, ep, eq = ev_n[sel], ev_p[sel], ev_q[sel]
        a = area[en, ep]
        unwritten = (offset[en, :, :, eq] == 0).all(-1)  # (E, K); quirk: exact (0, 0) is unwritten
        val = valid[en, ep]  # (E, K)
        writable = val & (unwritten | ~(area_map[en, eq].to(ftype) < a)[:, None])
        first = torch.where(writable, kk, k).amin(1, keepdim=True)  # first keypoint written (k: none)
        write = val & ((kk == first) | ((kk > first) & (unwritten | keeps_writing[en, ep][:, None])))
        we, wk = torch.nonzero(write, as_tuple=True)
        wn, wp, wq = en[we], ep[we], eq[we]
        offset[wn, wk, 0, wq] = ((wq % r).to(ftype) - x[wn, wp, wk]).to(torch.float32)
        offset[wn, wk, 1, wq] = ((wq // r).to(ftype) - y[wn, wp, wk]).to(torch.float32)
        w = (1.0 / torch.sqrt(area[wn, wp])).to(torch.float32)
        weight[wn, wk, 0, wq] = w
        weight[wn, wk, 1, wq] = w
        wrote = first[:, 0] < k
        area_map[en[wrote], eq[wrote]] = a[wrote].to(torch.float32)
    return offset, weight


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

        offsets = _official_offsets_torch if cfg.official_quirks else _smallest_area_offsets_torch
        offset, offset_weight = offsets(x, y, v, inside, area, r, int(cfg.offset_radius))

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
