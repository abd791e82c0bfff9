"""Crowd scenes of the synthetic people: deterministic, everyone in view at the training scale and apart,
annotations that match the drawing, walking videos, and random streams no training image uses."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from dekr.data.spec import load_spec
from dekr.data.synthetic import SPLIT_CODES, scene_rng
from dekr.data.synthetic_crowd import CrowdConfig, crowd_scene
from dekr.data.synthetic_figures import body_plan

COCO = load_spec("coco")
VIDEO = CrowdConfig(num_people=4, height=160, num_frames=24)


def keypoints_of(anns: list[dict]) -> np.ndarray:
    """COCO annotations -> (P, K, 3) x, y, v."""
    return np.array([np.reshape(a["keypoints"], (-1, 3)) for a in anns], dtype=np.float64)


def test_same_seed_and_index_same_scene_other_index_other_scene():
    image, anns = crowd_scene(3, 0, VIDEO).frame(5)
    again, anns_again = crowd_scene(3, 0, VIDEO).frame(5)
    np.testing.assert_array_equal(image, again)
    assert anns == anns_again
    other, other_anns = crowd_scene(3, 1, VIDEO).frame(5)
    assert other.shape != image.shape or not np.array_equal(other, image)
    assert keypoints_of(other_anns).shape != keypoints_of(anns).shape or \
        not np.allclose(keypoints_of(other_anns), keypoints_of(anns))


@pytest.mark.parametrize("seed", range(6))
def test_everyone_in_view_at_the_training_scale_side_by_side(seed):
    cfg = CrowdConfig(num_people=3 + seed % 2, height=192)
    scene = crowd_scene(seed, 0, cfg)
    image, anns = scene.frame(0)
    assert image.shape == (192, scene.width, 3) and image.dtype == np.uint8
    assert scene.width > 2 * scene.height  # wide: the short side is the height, as inference resizes it
    assert scene.width % 2 == 0  # video codecs need even sizes
    assert len(anns) == len(scene.walkers) == cfg.num_people
    kp = keypoints_of(anns)
    assert (kp[..., 2] == 2).all()  # every keypoint in view, none covered by a neighbour
    # each person's size relative to the image height is the demo's (0.7-0.9), its box wholly inside
    sizes = [w.start.body / cfg.height for w in scene.walkers]
    assert all(cfg.min_height <= s <= cfg.max_height for s in sizes), sizes
    for ann in anns:
        x, y, w, h = ann["bbox"]
        assert x > 0 and y > 0 and x + w < scene.width and y + h < scene.height
        assert h > 0.6 * cfg.height  # head to feet
    # left to right, boxes apart (at most a hand reaching into a neighbour's box)
    boxes = sorted(a["bbox"] for a in anns)
    for (ax, _, aw, _), (bx, _, bw, _) in itertools.pairwise(boxes):
        assert ax + aw - bx < 0.25 * min(aw, bw)


def test_annotations_are_the_keypoints_drawn():
    scene = crowd_scene(1, 0, VIDEO)
    plan = body_plan(COCO)
    for t in (0, 11, 23):
        image, anns = scene.frame(t, image_id=7, first_ann_id=100)
        assert [a["image_id"] for a in anns] == [7] * 4 and [a["id"] for a in anns] == [100, 101, 102, 103]
        kp = keypoints_of(anns)
        expected = np.array([plan.figure(w.pose(t, scene.stride_frames))["keypoints"] for w in scene.walkers])
        np.testing.assert_allclose(kp[..., :2], expected, atol=0.01)
        for ann, person in zip(anns, kp):
            assert ann["num_keypoints"] == (person[:, 2] > 0).sum() == COCO.num_keypoints
            x, y, w, h = ann["bbox"]
            assert (person[:, 0] >= x).all() and (person[:, 0] <= x + w).all()
            assert (person[:, 1] >= y).all() and (person[:, 1] <= y + h).all()
        # the figure is drawn where it is labelled: the shoulders and hips differ from the bare background
        torso = kp[:, [5, 6, 11, 12], :2].reshape(-1, 2).round().astype(int)
        drawn = image[torso[:, 1], torso[:, 0]].astype(int)
        bare = scene.background[torso[:, 1], torso[:, 0]].astype(int)
        assert (np.abs(drawn - bare).max(axis=1) > 0).mean() > 0.9


def test_video_people_walk_one_way_and_stay_in_view():
    scene = crowd_scene(2, 1, VIDEO)
    tracks = []
    for t in range(VIDEO.num_frames):
        _, anns = scene.frame(t)
        kp = keypoints_of(anns)
        assert kp.shape == (4, 17, 3) and (kp[..., 2] > 0).all()  # nobody leaves the frame
        assert (kp[..., 0] >= 0).all() and (kp[..., 0] < scene.width).all()
        tracks.append(kp[:, [11, 12], 0].mean(axis=1))  # hip centres
    hips = np.array(tracks)  # (frames, people)
    walked = hips[-1] - hips[0]
    step = VIDEO.step * VIDEO.height
    assert (np.sign(walked) == np.sign(walked[0])).all()  # all the same way
    assert (np.abs(walked) > 0.8 * step * (VIDEO.num_frames - 1)).all()
    assert (np.diff(np.argsort(hips, axis=1), axis=0) == 0).all()  # nobody overtakes: the order holds
    # the legs swing: the ankles move relative to the hips over a stride
    _, first = scene.frame(0)
    _, half = scene.frame(int(VIDEO.stride_frames // 2))
    a, b = keypoints_of(first), keypoints_of(half)
    spread_a, spread_b = a[:, 15, 0] - a[:, 16, 0], b[:, 15, 0] - b[:, 16, 0]
    assert (np.abs(spread_a - spread_b) > 0.05 * VIDEO.height).any()


def test_scene_streams_are_none_of_the_training_or_validation_streams():
    """A crowd scene's random streams carry a split code no training or validation split has, so no
    seed and index give a crowd scene the randomness of an image the demo trains or validates on."""
    assert SPLIT_CODES["crowd"] not in {SPLIT_CODES["train"], SPLIT_CODES["val"]}
    assert len(set(SPLIT_CODES.values())) == len(SPLIT_CODES)
    for seed, index, stream in itertools.product(range(3), range(3), range(2)):
        crowd = scene_rng(seed, "crowd", index, stream).random(8)
        for split in ("train", "val"):
            assert not np.allclose(crowd, scene_rng(seed, split, index, stream).random(8))


def test_other_specs_of_person_parts_work_and_other_skeletons_are_refused():
    _, anns = crowd_scene(0, 0, CrowdConfig(num_people=2, height=128), load_spec("crowdpose")).frame(0)
    assert keypoints_of(anns).shape == (2, 14, 3)
    with pytest.raises(ValueError, match="stick people.*ap10k"):
        crowd_scene(0, 0, CrowdConfig(num_people=2, height=128), load_spec("ap10k"))
