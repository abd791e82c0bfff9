"""Temporal smoothing of keypoints in video: the One Euro filter (Casiez, Roussel, Vogel, CHI 2012).

A One Euro filter is an exponential smoother whose cutoff frequency rises with the speed of the
signal: slow motion is smoothed hard (jitter vanishes), fast motion follows with little lag.

* :class:`OneEuroFilter` filters an array of any shape (all entries independently, vectorised).
* :class:`PoseSmoother` keeps one filter per tracked person (``track_id`` from
  :class:`dekr.inference.tracking.PoseTracker`) over the (x, y) of its K keypoints.
* :func:`keypoint_jitter` measures jitter (mean magnitude of the frame-to-frame acceleration).

Units: positions in pixels, times in seconds, so ``min_cutoff`` and ``d_cutoff`` are in Hz and
``beta`` in 1/pixel (the cutoff grows by ``beta * speed`` Hz for a speed in pixels per second).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dekr.dataclass_config import dataclass_from_dict


@dataclass
class SmoothingConfig:
    """One Euro filter parameters for keypoint trajectories.

    Attributes:
        enabled: smooth at all.
        min_cutoff: cutoff frequency (Hz) at rest; lower = smoother still poses, more lag.
        beta: cutoff increase per unit speed (Hz per pixel/s); higher = less lag on fast motion.
        d_cutoff: cutoff (Hz) of the speed estimate itself.
        min_score: keypoints scoring below this are not fed to the filter (their raw value is
            returned and the filter state is kept), so that a briefly lost joint does not drag
            the filtered track.
        max_gap: a track unseen for more than this many seconds restarts its filter.
    """

    enabled: bool = True
    min_cutoff: float = 1.0
    beta: float = 0.01
    d_cutoff: float = 1.0
    min_score: float = 0.0
    max_gap: float = 1.0

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0:
            raise ValueError(
                f"min_cutoff and d_cutoff must be > 0 Hz, got {self.min_cutoff}, {self.d_cutoff}"
            )
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SmoothingConfig":
        return dataclass_from_dict(cls, data, "smoothing")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Exponential smoothing factor ``alpha = 1 / (1 + tau / dt)`` with ``tau = 1 / (2 pi cutoff)``."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter over an array of values, element-wise.

    ``filter(x, t)`` takes the new sample ``x`` (any shape, fixed after the first call) at time
    ``t`` seconds and returns the filtered value. ``mask`` (same shape, bool) selects the entries
    to update; the others keep their state and return ``x`` unchanged.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.01, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.x_prev: np.ndarray | None = None  # last filtered value
        self.dx_prev: np.ndarray | None = None  # last filtered derivative
        self.seen: np.ndarray | None = None  # entries that have been initialised
        self.t_prev: np.ndarray | None = None  # per-entry time of the last update

    def reset(self) -> None:
        self.x_prev = self.dx_prev = self.seen = self.t_prev = None

    def filter(self, x: np.ndarray, t: float, mask: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        mask = (
            np.ones(x.shape, dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), x.shape)
        )
        if self.x_prev is None or self.x_prev.shape != x.shape:
            self.x_prev = x.copy()
            self.dx_prev = np.zeros_like(x)
            self.seen = mask.copy()
            self.t_prev = np.full(x.shape, float(t))
            return x.copy()
        assert self.dx_prev is not None and self.seen is not None and self.t_prev is not None
        fresh = mask & ~self.seen  # first sample of an entry: take it as is
        update = mask & self.seen
        dt = np.maximum(float(t) - self.t_prev, 1e-6)
        out = x.copy()
        if update.any():
            dx = (x - self.x_prev) / dt
            alpha_d = smoothing_factor(self.d_cutoff, dt)
            dx_hat = alpha_d * dx + (1.0 - alpha_d) * self.dx_prev
            cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
            alpha = smoothing_factor(cutoff, dt)
            x_hat = alpha * x + (1.0 - alpha) * self.x_prev
            out = np.where(update, x_hat, out)
            self.dx_prev = np.where(update, dx_hat, self.dx_prev)
        self.dx_prev = np.where(fresh, 0.0, self.dx_prev)
        self.x_prev = np.where(mask, out, self.x_prev)
        self.t_prev = np.where(mask, float(t), self.t_prev)
        self.seen = self.seen | mask
        return out


class PoseSmoother:
    """One :class:`OneEuroFilter` per track over its keypoints' (x, y); scores pass through.

    Usage per frame: ``smoothed = smoother(keypoints, track_ids, t)`` with ``keypoints`` (P, K, 3)
    (x, y, score) and ``track_ids`` (P,) ints; returns a smoothed copy (P, K, 3). Tracks that
    disappear for longer than ``cfg.max_gap`` seconds are forgotten.
    """

    def __init__(self, cfg: SmoothingConfig | None = None) -> None:
        self.cfg = cfg or SmoothingConfig()
        self.filters: dict[int, OneEuroFilter] = {}
        self.last_seen: dict[int, float] = {}

    def reset(self) -> None:
        self.filters.clear()
        self.last_seen.clear()

    def __call__(self, keypoints: np.ndarray, track_ids: np.ndarray | list[int], t: float) -> np.ndarray:
        keypoints = np.asarray(keypoints, dtype=np.float64)
        out = keypoints.copy()
        if not self.cfg.enabled:
            return out
        for tid in [tid for tid, seen in self.last_seen.items() if t - seen > self.cfg.max_gap]:
            self.filters.pop(tid, None)
            self.last_seen.pop(tid, None)
        for p, tid in enumerate(np.asarray(track_ids).reshape(-1).tolist()):
            tid = int(tid)
            if tid < 0:  # untracked pose: nothing to smooth against
                continue
            filt = self.filters.get(tid)
            if filt is None:
                filt = self.filters[tid] = OneEuroFilter(
                    self.cfg.min_cutoff, self.cfg.beta, self.cfg.d_cutoff
                )
            mask = np.repeat((keypoints[p, :, 2] >= self.cfg.min_score)[:, None], 2, axis=1)
            out[p, :, :2] = filt.filter(keypoints[p, :, :2], t, mask)
            self.last_seen[tid] = t
        return out


def keypoint_jitter(trajectory: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean norm of the second difference (frame-to-frame acceleration) of (T, ..., 2) positions.

    A steady or uniformly moving point has jitter 0; shaking adds roughly ``2 * sqrt(2) * noise``
    per axis pair. ``valid`` (T, ...) masks out positions (e.g. low-score keypoints); a second
    difference counts only when its three positions are valid.
    """
    traj = np.asarray(trajectory, dtype=np.float64)
    if traj.shape[0] < 3:
        raise ValueError(f"jitter needs at least 3 frames, got {traj.shape[0]}")
    accel = np.linalg.norm(traj[2:] - 2 * traj[1:-1] + traj[:-2], axis=-1)
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        ok = v[2:] & v[1:-1] & v[:-2]
        if not ok.any():
            return float("nan")
        return float(accel[ok].mean())
    return float(accel.mean())
