"""One Euro smoothing: against a scalar reference, jitter before/after on shaking sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dekr.data.spec import load_spec
from dekr.inference import DecodeConfig, predict_poses
from dekr.inference.smoothing import OneEuroFilter, PoseSmoother, SmoothingConfig, keypoint_jitter
from dekr.inference.tracking import PoseTracker

from tests.helpers.sequences import shifted_sequence

SPEC = load_spec("coco")


class ScalarOneEuro:
    """Straight transcription of the paper's pseudo-code (Casiez et al. 2012), one value."""

    def __init__(self, min_cutoff, beta, d_cutoff):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x = self.dx = self.t = None

    @staticmethod
    def alpha(cutoff, dt):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x, t):
        if self.x is None:
            self.x, self.dx, self.t = x, 0.0, t
            return x
        dt = t - self.t
        dx = (x - self.x) / dt
        a_d = self.alpha(self.d_cutoff, dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        cutoff = self.min_cutoff + self.beta * abs(self.dx)
        a = self.alpha(cutoff, dt)
        self.x = a * x + (1 - a) * self.x
        self.t = t
        return self.x


def test_matches_scalar_reference():
    rng = np.random.default_rng(0)
    signal = np.cumsum(rng.normal(0, 3, (50, 4, 2)), axis=0)
    times = np.cumsum(rng.uniform(0.02, 0.05, 50))
    vec = OneEuroFilter(1.2, 0.05, 1.0)
    refs = [[ScalarOneEuro(1.2, 0.05, 1.0) for _ in range(2)] for _ in range(4)]
    for x, t in zip(signal, times):
        out = vec.filter(x, t)
        expected = np.array([[refs[i][j](x[i, j], t) for j in range(2)] for i in range(4)])
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-9)


def test_constant_passes_and_mask_keeps_state():
    f = OneEuroFilter()
    x = np.array([[10.0, 20.0], [30.0, 40.0]])
    for t in range(5):
        np.testing.assert_allclose(f.filter(x, t / 30), x)
    # Masked entries return the raw input and do not move the state.
    wild = x + 100.0
    mask = np.array([[True, True], [False, False]])
    out = f.filter(wild, 5 / 30, mask)
    np.testing.assert_allclose(out[1], wild[1])
    assert np.all(out[0] < wild[0]) and np.all(out[0] > x[0])
    np.testing.assert_allclose(f.x_prev[1], x[1])


def test_jitter_drops_and_beta_reduces_lag():
    """A slow sway plus 3 px shake at 30 fps: jitter falls by more than 3x and the error to the
    true path falls; on a fast ramp beta > 0 lags less than beta = 0."""
    rng = np.random.default_rng(0)
    t = np.arange(120) / 30.0
    truth = np.stack([200 + 40 * np.sin(2 * np.pi * 0.3 * t), 150 + 10 * t], axis=-1)[:, None]  # (T, 1, 2)
    noisy = truth + rng.normal(0, 3.0, truth.shape)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.01)
    smooth = np.stack([f.filter(x, ti) for x, ti in zip(noisy, t)])
    assert keypoint_jitter(smooth) < keypoint_jitter(noisy) / 3
    err = lambda a: np.linalg.norm(a[10:] - truth[10:], axis=-1).mean()  # noqa: E731
    assert err(smooth) < err(noisy)

    ramp = (600.0 * t)[:, None, None].repeat(2, -1)  # 600 px/s
    lag = {}
    for beta in (0.0, 0.01):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = np.stack([f.filter(x, ti) for x, ti in zip(ramp, t)])
        lag[beta] = float(np.abs(out[-1] - ramp[-1]).max())
    assert lag[0.01] < lag[0.0] / 3


def test_pose_smoother_tracks_low_scores_and_gaps():
    cfg = SmoothingConfig(min_cutoff=0.5, beta=0.0, min_score=0.3, max_gap=0.2)
    smoother = PoseSmoother(cfg)
    base = np.zeros((2, 17, 3))
    base[..., 2] = 1.0
    base[1, :, :2] = 500.0
    smoother(base, [0, 1], 0.0)
    moved = base.copy()
    moved[:, :, :2] += 30.0
    moved[0, 3, 2] = 0.1  # a low-scoring keypoint passes through unfiltered
    out = smoother(moved, [0, 1], 1 / 30)
    assert np.all(out[0, 0, :2] < 30.0) and np.all(
        out[1, 0, :2] < 530.0
    )  # each track smoothed vs its own past
    np.testing.assert_allclose(out[0, 3, :2], moved[0, 3, :2])
    np.testing.assert_allclose(out[..., 2], moved[..., 2])
    # Untracked poses (id -1) pass through; after a gap > max_gap a track starts afresh.
    np.testing.assert_allclose(smoother(moved, [-1, -1], 2 / 30), moved)
    np.testing.assert_allclose(
        smoother(moved + 50.0 * np.array([1, 1, 0]), [0, 1], 1.0)[..., :2], (moved + 50.0)[..., :2]
    )
    assert PoseSmoother(SmoothingConfig(enabled=False))(moved, [0, 1], 0.0) is not moved
    with pytest.raises(ValueError, match="unknown smoothing option"):
        SmoothingConfig.from_dict({"cutoff": 1})
    with pytest.raises(ValueError, match="min_cutoff"):
        SmoothingConfig(min_cutoff=0)


def test_keypoint_jitter_values():
    line = np.arange(10, dtype=float)[:, None, None].repeat(2, -1)
    assert keypoint_jitter(line) == 0.0
    zigzag = line.copy()
    zigzag[::2] += 1.0
    assert keypoint_jitter(zigzag) == pytest.approx(2 * math.sqrt(2))
    valid = np.ones(zigzag.shape[:2], bool)
    valid[:] = False
    assert math.isnan(keypoint_jitter(zigzag, valid))
    with pytest.raises(ValueError):
        keypoint_jitter(line[:2])


def test_jitter_drops_on_a_shaking_real_image_through_decoder_and_tracker():
    """A real image's persons, camera shake of 3 px plus a slow pan, decoded by predict_poses from
    rendered network outputs, tracked, smoothed: keypoint jitter per track falls by more than 2x."""
    from tests.inference.render import GroundTruthNet, synthetic_images

    gt, frames, _ = shifted_sequence(24, step=(1.0, 0.5), shake=3.0, seed=3)
    cfg = DecodeConfig.for_dataset(SPEC, input_size=256, flip_test=False)
    images, _ = synthetic_images(gt)
    preds = predict_poses(GroundTruthNet(gt, SPEC, cfg), images, SPEC, cfg)
    tracker = PoseTracker(SPEC.sigmas)
    smoother = PoseSmoother(SmoothingConfig(min_cutoff=1.0, beta=0.01))
    raw: dict[int, list[np.ndarray]] = {}
    smooth: dict[int, list[np.ndarray]] = {}
    fps = 30.0
    for t, pred in enumerate(preds):
        kps, scores = pred["keypoints"].numpy(), pred["scores"].numpy()
        kps, scores = kps[scores > 0.1], scores[scores > 0.1]
        ids = tracker.update(kps, scores)
        out = smoother(kps, ids, t / fps)
        for tid, k_raw, k_smooth in zip(ids, kps, out):
            raw.setdefault(int(tid), []).append(k_raw)
            smooth.setdefault(int(tid), []).append(k_smooth)
    tracks = [tid for tid, seq in raw.items() if len(seq) == len(frames)]
    assert len(tracks) == len(frames[0])
    for tid in tracks:
        r, s = np.stack(raw[tid]), np.stack(smooth[tid])
        valid = r[..., 2] > 0.1
        before, after = keypoint_jitter(r[..., :2], valid), keypoint_jitter(s[..., :2], valid)
        assert after < before / 2, (tid, before, after)
