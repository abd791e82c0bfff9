"""Synthetic data for any keypoint spec: valid COCO annotations, the skeleton drawn where it is labelled,
several overlapping figures, left warm / right cool from the flip pairs, determinism, files pycocotools reads."""
from __future__ import annotations

import contextlib
import io
import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dekr.data.datamodule import DEKRDataModule
from dekr.data.spec import KeypointSpec, load_spec
from dekr.data.synthetic import SyntheticConfig, SyntheticKeypoints, write_synthetic_coco
from dekr.data.synthetic_figures import SkeletonFigure, StickPerson, body_plan

# A made-up skeleton: a chain of 5 with no left and right.
CHAIN = {"name": "chain5", "keypoint_names": ["a", "b", "c", "d", "e"], "flip_pairs": [],
         "sigmas": [0.05] * 5, "skeleton": [[0, 1], [1, 2], [2, 3], [3, 4]]}

SPECS = {"coco": load_spec("coco"), "crowdpose": load_spec("crowdpose"),
         "ap10k": load_spec("ap10k"), "chain5": KeypointSpec.from_dict(CHAIN)}
CROWDED = SyntheticConfig(num_train=2, num_val=24, image_size=128, min_people=2, max_people=4, seed=5)


@pytest.fixture(scope="module")
def crowded() -> dict[str, SyntheticKeypoints]:
    """The validation split of CROWDED for every spec, built once."""
    return {name: SyntheticKeypoints("val", CROWDED, spec) for name, spec in SPECS.items()}


def keypoints_of(ann: dict) -> np.ndarray:
    return np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)


def test_body_plan_is_the_stick_person_for_human_specs_and_a_skeleton_figure_otherwise():
    assert isinstance(body_plan(SPECS["coco"]), StickPerson)
    assert isinstance(body_plan(SPECS["crowdpose"]), StickPerson)  # its head top and neck are person parts
    assert isinstance(body_plan(SPECS["ap10k"]), SkeletonFigure)
    assert isinstance(body_plan(SPECS["chain5"]), SkeletonFigure)


def test_default_spec_is_coco():
    cfg = SyntheticConfig(num_train=1, num_val=3, image_size=96)
    assert SyntheticKeypoints("val", cfg).coco == SyntheticKeypoints("val", cfg, SPECS["coco"]).coco


@pytest.mark.parametrize("name", SPECS)
def test_annotations_are_valid_coco_keypoints_of_the_spec(crowded, name):
    spec, data = SPECS[name], crowded[name]
    k = spec.num_keypoints
    (category,) = data.coco["categories"]
    assert category["id"] == spec.category_ids[0] and category["keypoints"] == list(spec.keypoint_names)
    assert category["skeleton"] == [[a + 1, b + 1] for a, b in spec.skeleton]
    images = {im["id"]: im for im in data.coco["images"]}
    anns = data.coco["annotations"]
    assert len({a["id"] for a in anns}) == len(anns)
    for ann in anns:
        im = images[ann["image_id"]]
        kp = keypoints_of(ann)
        assert kp.shape == (k, 3) and ann["category_id"] == spec.category_ids[0]
        labelled = kp[:, 2] > 0
        assert set(np.unique(kp[:, 2])) <= {0, 1, 2} and ann["num_keypoints"] == labelled.sum() > 0
        assert (kp[labelled, 0] >= 0).all() and (kp[labelled, 0] < im["width"]).all()
        assert (kp[labelled, 1] >= 0).all() and (kp[labelled, 1] < im["height"]).all()
        assert (kp[~labelled, :2] == 0).all()
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
        assert 0 < ann["area"] <= w * h


@pytest.mark.parametrize("name", SPECS)
def test_several_figures_per_image_overlap_and_occlude_each_other(crowded, name):
    anns = crowded[name].coco["annotations"]
    per_image = np.bincount([a["image_id"] - min(a["image_id"] for a in anns) for a in anns])
    assert per_image.max() >= 3 and (per_image >= 2).mean() > 0.5, per_image
    overlapping = 0
    for a, b in itertools.combinations(anns, 2):
        if a["image_id"] == b["image_id"]:
            (ax, ay, aw, ah), (bx, by, bw, bh) = a["bbox"], b["bbox"]
            overlapping += min(ax + aw, bx + bw) > max(ax, bx) and min(ay + ah, by + bh) > max(ay, by)
    assert overlapping >= 5
    visibility = np.concatenate([keypoints_of(a)[:, 2] for a in anns])
    assert (visibility == 1).sum() >= 5 and (visibility == 2).mean() > 0.5  # occluded by a later figure


@pytest.mark.parametrize("name", ["crowdpose", "ap10k", "chain5"])
def test_skeleton_limbs_join_near_keypoints(crowded, name):
    """Keypoints a limb joins lie nearer each other than keypoints it does not (a shuffled figure fails)."""
    spec = SPECS[name]
    limbs = {tuple(sorted(pair)) for pair in spec.skeleton}
    others = [pair for pair in itertools.combinations(range(spec.num_keypoints), 2) if pair not in limbs]
    whole = [keypoints_of(a) for a in crowded[name].coco["annotations"] if a["num_keypoints"] == spec.num_keypoints]
    assert len(whole) >= 10
    for kp in whole:
        length = [np.linalg.norm(kp[a, :2] - kp[b, :2]) for a, b in limbs]
        apart = [np.linalg.norm(kp[a, :2] - kp[b, :2]) for a, b in others]
        extent = np.ptp(kp[:, :2], axis=0).max()
        assert np.mean(length) < 0.6 * np.mean(apart)
        assert max(length) < 0.75 * extent


def pixel_at(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """The pixel a figure drew at (x, y): discs are centred on the rounded point."""
    return image[min(int(round(y)), image.shape[0] - 1), min(int(round(x)), image.shape[1] - 1)]


@pytest.mark.parametrize("k, skeleton, flip_pairs", [
    (3, [], []),                              # no limbs at all: keypoints only
    (4, [[0, 1], [2, 3]], [[0, 2], [1, 3]]),  # two parts, every keypoint left or right
    (3, [[0, 0], [1, 2]], [[1, 2]]),          # a self-loop is ignored
])
def test_odd_skeletons_still_make_figures_of_distinct_keypoints(k, skeleton, flip_pairs):
    spec = KeypointSpec.from_dict({"name": "odd", "keypoint_names": [f"k{i}" for i in range(k)],
                                   "flip_pairs": flip_pairs, "sigmas": [0.05] * k, "skeleton": skeleton})
    data = SyntheticKeypoints("val", SyntheticConfig(num_train=1, num_val=6, image_size=96, max_people=2), spec)
    whole = [keypoints_of(a) for a in data.coco["annotations"] if a["num_keypoints"] == k]
    assert whole
    for kp in whole:
        gaps = [np.linalg.norm(kp[a, :2] - kp[b, :2]) for a, b in itertools.combinations(range(k), 2)]
        assert min(gaps) > 2.0


def hues_at(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """OpenCV hue (0-179) of the pixels at (x, y) points."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    return np.array([pixel_at(hsv, x, y)[0] for x, y in points], dtype=np.int64)


@pytest.mark.parametrize("name", ["crowdpose", "ap10k"])
def test_left_keypoints_render_warm_and_right_ones_cool(crowded, name):
    """Left and right differ by colour, from the spec's flip pairs (left first), not by position."""
    spec, data = SPECS[name], crowded[name]
    left, right = [a for a, _ in spec.flip_pairs], [b for _, b in spec.flip_pairs]
    warm, cool = [], []
    for info in data.coco["images"]:
        image = data.render(info)
        for ann in (a for a in data.coco["annotations"] if a["image_id"] == info["id"]):
            kp = keypoints_of(ann)
            warm += list(hues_at(image, kp[left][kp[left, 2] == 2, :2]))
            cool += list(hues_at(image, kp[right][kp[right, 2] == 2, :2]))
    warm, cool = np.array(warm), np.array(cool)
    assert len(warm) >= 50 and len(cool) >= 50
    # warm: red to yellow (OpenCV hue <= 32 or >= 160); cool: cyan to violet (80-136)
    assert ((warm <= 32) | (warm >= 160)).mean() > 0.95, np.bincount(warm // 10)
    assert ((cool >= 80) & (cool <= 136)).mean() > 0.95, np.bincount(cool // 10)


@pytest.mark.parametrize("name", ["ap10k", "chain5"])
def test_rendered_figure_has_each_visible_keypoint_in_its_own_colour(crowded, name):
    """The image shows a skeleton figure's keypoint where it is labelled visible: the centre of its disc."""
    plan, data = body_plan(SPECS[name]), crowded[name]
    colours = np.array(plan.keypoint_colors)
    assert len({tuple(c) for c in colours}) == len(colours)  # every keypoint has its own colour
    hits = []
    for info in data.coco["images"]:
        image = data.render(info).astype(int)
        for ann in (a for a in data.coco["annotations"] if a["image_id"] == info["id"]):
            for j, (x, y, v) in enumerate(keypoints_of(ann)):
                if v == 2:
                    hits.append(np.abs(pixel_at(image, x, y) - colours[j]).max() <= 2)
    # a few keypoints lie under a disc of their own figure drawn later (bent onto each other)
    assert len(hits) >= 100 and np.mean(hits) > 0.95


def test_same_seed_same_data_other_seed_other_data():
    spec = SPECS["ap10k"]
    cfg = SyntheticConfig(num_train=4, num_val=3, image_size=96, seed=3)
    a, b = SyntheticKeypoints("train", cfg, spec), SyntheticKeypoints("train", cfg, spec)
    assert a.coco == b.coco
    for info in a.coco["images"]:
        image = a.render(info)
        assert image.shape == (info["height"], info["width"], 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, b.render(info))
    other = SyntheticKeypoints("train", SyntheticConfig(num_train=4, num_val=3, image_size=96, seed=4), spec)
    assert other.coco["annotations"] != a.coco["annotations"]
    mine, theirs = a.render(a.coco["images"][0]), other.render(other.coco["images"][0])
    assert mine.shape != theirs.shape or not np.array_equal(mine, theirs)


def evaluate_ground_truth_as_predictions(ann_path: Path, spec: KeypointSpec) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_path))
        preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"],
                  "score": 1.0} for a in gt.dataset["annotations"]]
        ev = COCOeval(gt, gt.loadRes(preds), "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(spec.sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_written_coco_folder_loads_in_pycocotools(tmp_path):
    spec = SPECS["ap10k"]
    cfg = SyntheticConfig(num_train=2, num_val=6, image_size=96, seed=1)
    out = write_synthetic_coco(tmp_path / "syn", cfg, splits=("val",), spec=spec)
    ann_path = out / "annotations" / "person_keypoints_val.json"
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_path))
    assert coco.loadCats(spec.category_ids[0])[0]["keypoints"] == list(spec.keypoint_names)
    assert len(coco.getImgIds()) == 6 and len(coco.getAnnIds(catIds=[spec.category_ids[0]])) >= 6
    for info in coco.loadImgs(coco.getImgIds()):
        image = cv2.imread(str(out / "images" / info["file_name"]))
        assert image.shape == (info["height"], info["width"], 3)
    assert evaluate_ground_truth_as_predictions(ann_path, spec) == pytest.approx(1.0)
    # rewritten for another skeleton with the same config, not for the same one
    stamp = ann_path.stat().st_mtime_ns
    write_synthetic_coco(tmp_path / "syn", cfg, splits=("val",), spec=spec)
    assert ann_path.stat().st_mtime_ns == stamp
    write_synthetic_coco(tmp_path / "syn", cfg, splits=("val",), spec=SPECS["chain5"])
    with contextlib.redirect_stdout(io.StringIO()):
        assert COCO(str(ann_path)).loadCats(1)[0]["keypoints"] == list("abcde")


def test_datamodule_generates_the_skeleton_of_its_spec():
    dm = DEKRDataModule(dataset="synthetic", spec="ap10k", input_size=64, batch_size=2, val_batch_size=2,
                        num_workers=0, pin_memory=False, persistent_workers=False,
                        synthetic=SyntheticConfig(num_train=4, num_val=2, image_size=96, min_people=2, max_people=3))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["heatmap"].shape == (2, 18, 16, 16) and batch["offset"].shape == (2, 34, 16, 16)
    assert batch["heatmap"][:, :17].amax(dim=(2, 3)).gt(0.5).any(dim=0).sum() >= 15  # most keypoints are targets
    gt = dm.val_ground_truth
    assert gt["categories"][0]["keypoints"] == list(SPECS["ap10k"].keypoint_names)
    assert {a["category_id"] for a in gt["annotations"]} == {SPECS["ap10k"].category_ids[0]}
