"""Simple identity tracking across video frames: greedy matching of poses to tracks by OKS.

Each frame, every pose is compared with every live track's expected pose (its last pose moved by
its last per-frame displacement when ``use_velocity``), by Object Keypoint Similarity with the
spec's sigmas and the track's keypoint-box area. Pairs are taken greedily, highest OKS first,
while OKS >= ``oks_threshold``; poses left over start new tracks, tracks left over age and die
after ``max_age`` frames unmatched. No appearance model: ids survive motion, short occlusions and
detector flicker, not long crossings of similar poses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from dekr.dataclass_config import dataclass_from_dict


@dataclass
class TrackingConfig:
    """Attributes:
    enabled: assign track ids at all (off: every pose gets id -1).
    oks_threshold: minimum OKS between a pose and a track's expected pose to continue the track.
    max_age: frames a track survives without a match (it keeps its id if it comes back in time).
    min_keypoint_score: keypoints under this score are ignored by the OKS.
    min_pose_score: poses under this score neither start nor continue tracks (id -1).
    use_velocity: predict each track's pose with its last per-frame displacement.
    """

    enabled: bool = True
    oks_threshold: float = 0.3
    max_age: int = 10
    min_keypoint_score: float = 0.05
    min_pose_score: float = 0.0
    use_velocity: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "TrackingConfig":
        return dataclass_from_dict(cls, data, "tracking")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def keypoint_box_area(keypoints: np.ndarray, min_score: float = 0.0, floor: float = 32.0**2) -> np.ndarray:
    """(..., K, 3) -> (...) area (pixels^2) of the box around the keypoints scoring >= min_score."""
    kps = np.asarray(keypoints, dtype=np.float64)
    ok = kps[..., 2] >= min_score
    big = np.where(ok, 0.0, np.inf)
    x0 = np.min(kps[..., 0] + big, axis=-1)
    x1 = np.max(kps[..., 0] - big, axis=-1)
    y0 = np.min(kps[..., 1] + big, axis=-1)
    y1 = np.max(kps[..., 1] - big, axis=-1)
    area = np.where(ok.any(axis=-1), (x1 - x0) * (y1 - y0), 0.0)
    return np.maximum(area, floor)


def pairwise_oks(
    poses_a: np.ndarray,
    poses_b: np.ndarray,
    sigmas: Sequence[float],
    areas_b: np.ndarray,
    min_score: float = 0.0,
) -> np.ndarray:
    """OKS (A, B) between poses (A, K, 3) and reference poses (B, K, 3) with areas (B,).

    pycocotools' formula: ``mean_k exp(-d_k^2 / (2 * area * (2 sigma_k)^2))`` over the keypoints
    scoring >= ``min_score`` in both poses (0 when there are none).
    """
    a = np.asarray(poses_a, dtype=np.float64)
    b = np.asarray(poses_b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    var = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2  # (K,)
    d2 = ((a[:, None, :, :2] - b[None, :, :, :2]) ** 2).sum(-1)  # (A, B, K)
    e = d2 / (2.0 * np.asarray(areas_b, dtype=np.float64)[None, :, None] * var[None, None, :])
    both = (a[:, None, :, 2] >= min_score) & (b[None, :, :, 2] >= min_score)
    count = both.sum(-1)
    return np.where(count > 0, (np.exp(-e) * both).sum(-1) / np.maximum(count, 1), 0.0)


@dataclass
class Track:
    track_id: int
    keypoints: np.ndarray  # (K, 3) last matched pose
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # (dx, dy) per frame
    age: int = 0  # frames since the last match
    hits: int = 1

    def expected(self, use_velocity: bool) -> np.ndarray:
        pose = self.keypoints.copy()
        if use_velocity:
            pose[:, :2] += self.velocity * (self.age + 1)
        return pose


class PoseTracker:
    """Greedy OKS tracker. ``ids = tracker.update(keypoints, scores)`` per frame, in order.

    Args:
        sigmas: K OKS sigmas of the keypoint spec.
        cfg: tracking options.
    """

    def __init__(self, sigmas: Sequence[float], cfg: TrackingConfig | None = None) -> None:
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        self.cfg = cfg or TrackingConfig()
        self.tracks: list[Track] = []
        self.next_id = 0

    def reset(self) -> None:
        self.tracks = []
        self.next_id = 0

    def update(self, keypoints: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Match the frame's poses (P, K, 3) (scores (P,)) to the tracks -> track ids (P,), int64."""
        kps = np.asarray(keypoints, dtype=np.float64).reshape(-1, len(self.sigmas), 3)
        n = len(kps)
        ids = np.full(n, -1, dtype=np.int64)
        if not self.cfg.enabled:
            return ids
        scores = np.ones(n) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        eligible = scores >= self.cfg.min_pose_score

        matched_tracks: set[int] = set()
        if self.tracks and n:
            expected = np.stack([t.expected(self.cfg.use_velocity) for t in self.tracks])
            areas = keypoint_box_area(expected, self.cfg.min_keypoint_score)
            oks = pairwise_oks(kps, expected, self.sigmas, areas, self.cfg.min_keypoint_score)
            oks[~eligible] = -1.0
            # Greedy: best pair first (ties: lower pose index, then lower track index).
            order = np.argsort(-oks.ravel(), kind="stable")
            used_poses: set[int] = set()
            for flat in order:
                p, t = divmod(int(flat), len(self.tracks))
                if oks[p, t] < self.cfg.oks_threshold:
                    break
                if p in used_poses or t in matched_tracks:
                    continue
                used_poses.add(p)
                matched_tracks.add(t)
                track = self.tracks[t]
                ids[p] = track.track_id
                self._advance(track, kps[p])
        # Unmatched tracks age; dead ones go.
        for t, track in enumerate(self.tracks):
            if t not in matched_tracks:
                track.age += 1
        self.tracks = [t for t in self.tracks if t.age <= self.cfg.max_age]
        # Unmatched eligible poses start tracks.
        for p in range(n):
            if ids[p] < 0 and eligible[p]:
                ids[p] = self.next_id
                self.tracks.append(Track(self.next_id, kps[p].copy()))
                self.next_id += 1
        return ids

    def _advance(self, track: Track, pose: np.ndarray) -> None:
        ok = (pose[:, 2] >= self.cfg.min_keypoint_score) & (
            track.keypoints[:, 2] >= self.cfg.min_keypoint_score
        )
        if ok.any():
            step = (pose[ok, :2] - track.keypoints[ok, :2]).mean(axis=0) / (track.age + 1)
            track.velocity = step
        track.keypoints = pose.copy()
        track.age = 0
        track.hits += 1
