"""Greedy OKS tracking: OKS maths, id stability on sequences built by shifting a real image."""

from __future__ import annotations


import numpy as np
import pytest

from dekr.data.spec import load_spec
from dekr.inference import DecodeConfig, predict_poses
from dekr.inference.tracking import PoseTracker, TrackingConfig, keypoint_box_area, pairwise_oks

from tests.helpers.sequences import real_persons, shifted_sequence

SPEC = load_spec("coco")


def test_oks_identity_and_far():
    _, persons = real_persons()
    a = np.stack(persons)
    a[..., 2] = np.where(a[..., 2] > 0, 1.0, 0.0)
    oks = pairwise_oks(a, a, SPEC.sigmas, keypoint_box_area(a, 0.5), min_score=0.5)
    assert np.allclose(np.diag(oks), 1.0)
    far = a.copy()
    far[..., 0] += 10_000
    assert pairwise_oks(far, a, SPEC.sigmas, keypoint_box_area(a, 0.5), 0.5).max() < 1e-6
    # Hand computation for one pose and one keypoint moved by d.
    one = a[:1].copy()
    moved = one.copy()
    j = int(np.flatnonzero(one[0, :, 2] > 0)[0])
    moved[0, j, 0] += 5.0
    area = keypoint_box_area(one, 0.5)
    n_vis = int((one[0, :, 2] > 0).sum())
    expected = (n_vis - 1 + np.exp(-25.0 / (2 * area[0] * (2 * SPEC.sigmas[j]) ** 2))) / n_vis
    assert pairwise_oks(moved, one, SPEC.sigmas, area, 0.5)[0, 0] == pytest.approx(expected)
    assert pairwise_oks(np.zeros((0, 17, 3)), a, SPEC.sigmas, area.repeat(len(a)), 0.5).shape == (0, len(a))


def test_ids_stable_on_shifted_real_poses_with_flicker():
    """Shuffled detection order, a person missing for two frames, shake, a pan: ids never change."""
    _, frames, _ = shifted_sequence(30, step=(8.0, -3.0), shake=1.5)
    rng = np.random.default_rng(1)
    tracker = PoseTracker(SPEC.sigmas, TrackingConfig(max_age=5))
    identity: dict[int, int] = {}  # true person index -> track id
    for t, poses in enumerate(frames):
        present = np.arange(len(poses))
        if 10 <= t < 12:
            present = present[1:]  # person 0 is not detected for two frames
        order = rng.permutation(present)
        kps = poses[order].copy()
        kps[..., 2] = np.where(kps[..., 2] > 0, rng.uniform(0.5, 1.0, kps.shape[:2]), 0.0)
        ids = tracker.update(kps, kps[..., 2].mean(-1))
        assert len(set(ids.tolist())) == len(ids), "two poses got the same id"
        for person, tid in zip(order, ids):
            assert identity.setdefault(int(person), int(tid)) == tid, (
                f"person {person} changed id at frame {t}"
            )
    assert sorted(identity.values()) == list(range(len(frames[0])))


def test_tracks_expire_and_new_people_get_new_ids():
    _, persons = real_persons()
    tracker = PoseTracker(SPEC.sigmas, TrackingConfig(max_age=1))
    first = tracker.update(np.stack(persons[:2]))
    assert first.tolist() == [0, 1]
    assert tracker.update(np.zeros((0, 17, 3))).tolist() == []
    assert tracker.update(np.zeros((0, 17, 3))).tolist() == []  # age 2 > max_age: tracks gone
    again = tracker.update(np.stack(persons[:2]))
    assert again.tolist() == [2, 3]
    # A newcomer next to known people gets a fresh id, the known keep theirs.
    ids = tracker.update(np.stack(persons[:3]))
    assert ids.tolist() == [2, 3, 4]


def test_low_scoring_poses_and_disabled():
    _, persons = real_persons()
    tracker = PoseTracker(SPEC.sigmas, TrackingConfig(min_pose_score=0.5))
    ids = tracker.update(np.stack(persons[:2]), np.array([0.9, 0.1]))
    assert ids.tolist() == [0, -1]
    off = PoseTracker(SPEC.sigmas, TrackingConfig(enabled=False))
    assert off.update(np.stack(persons[:2])).tolist() == [-1, -1]
    with pytest.raises(ValueError, match="unknown tracking option"):
        TrackingConfig.from_dict({"oks": 0.5})


def test_ids_stable_through_the_decoder_on_a_shifted_real_image():
    """Network outputs rendered from the shifted real poses, decoded by predict_poses, tracked."""
    from tests.inference.render import GroundTruthNet, synthetic_images

    gt, frames, _ = shifted_sequence(12, step=(2.5, 1.0), shake=2.0)  # everyone stays inside
    cfg = DecodeConfig.for_dataset(SPEC, input_size=256, flip_test=False)
    images, _ = synthetic_images(gt)
    preds = predict_poses(GroundTruthNet(gt, SPEC, cfg), images, SPEC, cfg)
    tracker = PoseTracker(SPEC.sigmas)
    identity: dict[int, int] = {}
    for t, (pred, truth) in enumerate(zip(preds, frames)):
        kps, scores = pred["keypoints"].numpy(), pred["scores"].numpy()
        keep = scores > 0.1
        kps, scores = kps[keep], scores[keep]
        assert len(kps) == len(truth)
        ids = tracker.update(kps, scores)
        # Which true person each decoded pose is (nearest on the labelled keypoints).
        vis = truth[..., 2] > 0
        dist = np.stack(
            [
                np.nanmean(
                    np.where(vis, np.linalg.norm(truth[..., :2] - k[None, :, :2], axis=-1), np.nan), axis=1
                )
                for k in kps
            ]
        )
        for person, tid in zip(dist.argmin(1), ids):
            assert identity.setdefault(int(person), int(tid)) == tid, (
                f"person {person} changed id at frame {t}"
            )
    assert len(identity) == len(frames[0])
