"""COCO-format dataset semantics on real annotations, and bad-input handling."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from dekr.data.dataset import CocoKeypointDataset, DataError, read_image_rgb
from dekr.data.spec import load_spec

COCO = load_spec("coco")
CROWDPOSE = load_spec("crowdpose")


def _minicoco(fixtures_dir, split="train", **kw):
    root = fixtures_dir / "coco_minicoco"
    return CocoKeypointDataset(root / f"annotations/person_keypoints_{split}2017.json", root / f"images/{split}2017",
                               COCO, train=split == "train", **kw)


def test_training_images_have_annotations(fixtures_dir):
    ds = _minicoco(fixtures_dir)
    with open(fixtures_dir / "coco_minicoco/annotations/person_keypoints_train2017.json") as f:
        coco = json.load(f)
    annotated = {a["image_id"] for a in coco["annotations"]}
    assert set(ds.image_ids.tolist()) == annotated
    assert len(ds) == 19  # 30 images, 11 without a person


def test_validation_keeps_every_image_with_metadata(fixtures_dir):
    ds = _minicoco(fixtures_dir, "val")
    assert len(ds) == 30
    sample = ds[0]
    assert sample["image"].dtype == np.uint8 and sample["image"].ndim == 3
    assert sample["orig_size"] == sample["image"].shape[:2]
    assert isinstance(sample["image_id"], int) and sample["file_name"].endswith(".jpg")


def test_persons_centres_and_small_person_filter(fixtures_dir):
    ds = _minicoco(fixtures_dir)
    with open(fixtures_dir / "coco_minicoco/annotations/person_keypoints_train2017.json") as f:
        coco = json.load(f)
    checked_centre = 0
    for i, image_id in enumerate(ds.image_ids):
        anns = [a for a in coco["annotations"] if a["image_id"] == image_id and a["num_keypoints"] > 0]
        joints, area = ds.persons(i)
        assert len(joints) == len(anns)  # persons without keypoints are only in the ignore mask
        for person, ann in zip(joints, anns):
            kp = np.asarray(ann["keypoints"], float).reshape(17, 3)
            np.testing.assert_array_equal(person[:17], kp)
            assert ann["area"] >= 32 ** 2
            np.testing.assert_allclose(person[17, :2], kp[kp[:, 2] > 0, :2].mean(0))
            assert person[17, 2] == 1
            checked_centre += 1
        assert np.all(area >= 1024)
    assert checked_centre > 0


def test_small_person_gets_no_centre(fixtures_dir):
    with open(fixtures_dir / "coco/test_coco.json") as f:
        coco = json.load(f)
    ann = next(a for a in coco["annotations"] if a["num_keypoints"] > 0)
    ann["area"] = 1000.0  # < 32^2 (no real fixture person with keypoints is that small)
    ds = CocoKeypointDataset(coco, fixtures_dir / "coco", COCO, train=True)
    i = int(np.nonzero(ds.image_ids == ann["image_id"])[0][0])
    anns = [a for a in coco["annotations"] if a["image_id"] == ann["image_id"] and a["num_keypoints"] > 0]
    joints, _ = ds.persons(i)
    person = joints[[a["id"] for a in anns].index(ann["id"])]
    assert person[17, 2] == 0 and (person[:17, 2] > 0).sum() == ann["num_keypoints"]


def test_ignore_mask_from_crowd_rle_and_unlabelled_polygons(fixtures_dir):
    from pycocotools import mask as mask_utils

    ds = _minicoco(fixtures_dir)
    with open(fixtures_dir / "coco_minicoco/annotations/person_keypoints_train2017.json") as f:
        coco = json.load(f)
    for i, image_id in enumerate(ds.image_ids):
        info = next(im for im in coco["images"] if im["id"] == image_id)
        h, w = info["height"], info["width"]
        expected = np.zeros((h, w), bool)
        for a in coco["annotations"]:
            if a["image_id"] == image_id and (a["iscrowd"] or a["num_keypoints"] == 0):
                rles = mask_utils.frPyObjects(a["segmentation"], h, w)
                for rle in rles if isinstance(rles, list) else [rles]:
                    expected |= mask_utils.decode(rle).astype(bool)
        np.testing.assert_array_equal(ds.keep_mask(i) == 0, expected)
    crowd = int(np.nonzero(ds.image_ids == 34246)[0][0])
    assert (ds.keep_mask(crowd) == 0).sum() > 1000


def test_crowdpose_box_mask_and_quirks(fixtures_dir):
    root = fixtures_dir / "crowdpose"
    ds = CocoKeypointDataset(root / "test_crowdpose.json", root, CROWDPOSE, train=True)
    quirk = CocoKeypointDataset(root / "test_crowdpose.json", root, CROWDPOSE, train=True, official_quirks=True)
    with open(root / "test_crowdpose.json") as f:
        coco = json.load(f)
    unlabelled = [a for a in coco["annotations"] if a["num_keypoints"] == 0]
    assert unlabelled
    a = unlabelled[0]
    i = int(np.nonzero(ds.image_ids == a["image_id"])[0][0])
    x, y, w, h = a["bbox"]
    keep = ds.keep_mask(i)
    assert keep[int(y + h / 2), int(x + w / 2)] == 0  # box region ignored (no segmentation in CrowdPose)
    assert quirk.keep_mask(i).min() == 1  # official: no ignore region at all
    # CrowdPose has no `area`: every person with keypoints gets a centre (no small-person filter)
    joints, _ = ds.persons(i)
    assert np.all(joints[:, -1, 2] == 1)


def test_official_quirk_centre_and_area(fixtures_dir):
    ds = _minicoco(fixtures_dir, official_quirks=True)
    with open(fixtures_dir / "coco_minicoco/annotations/person_keypoints_train2017.json") as f:
        coco = json.load(f)
    found = False
    for i, image_id in enumerate(ds.image_ids):
        anns = [a for a in coco["annotations"] if a["image_id"] == image_id
                and (a["iscrowd"] == 0 or a["num_keypoints"] > 0)]
        joints, area = ds.persons(i)
        assert len(joints) == len(anns)
        for person, a, ann in zip(joints, area, anns):
            kp = np.asarray(ann["keypoints"], float).reshape(17, 3)
            xs, ys = np.append(kp[:, 0], 0), np.append(kp[:, 1], 0)
            assert a == pytest.approx((xs.max() - xs.min()) ** 2 + (ys.max() - ys.min()) ** 2)
            if ann["num_keypoints"] == 0 and ann["area"] >= 1024:
                assert person[17].tolist() == [0.0, 0.0, 1.0]  # official: a centre at image (0, 0)
                found = True
    assert found


def test_training_sample_contract(fixtures_dir):
    ds = _minicoco(fixtures_dir, input_size=256)
    ds.reseed(0)
    s = ds[0]
    assert s["image"].shape == (3, 256, 256) and s["image"].dtype.is_floating_point
    assert s["heatmap"].shape == (18, 64, 64) and s["heatmap_weight"].shape == (18, 64, 64)
    assert s["offset"].shape == (34, 64, 64) and s["offset_weight"].shape == (34, 64, 64)
    assert s["image_id"].dtype.is_floating_point is False
    ds.reseed(0)
    again = ds[0]
    for key in s:
        assert (s[key] == again[key]).all(), key


def test_read_image_rgb_is_rgb(fixtures_dir, tmp_path):
    import cv2

    path = tmp_path / "red.png"
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 2] = 255  # BGR red
    cv2.imwrite(str(path), img)
    rgb = read_image_rgb(path)
    assert rgb.shape == (4, 5, 3) and rgb[0, 0].tolist() == [255, 0, 0]


# ---------------------------------------------------------------- bad input
@pytest.fixture
def small_coco(fixtures_dir, tmp_path):
    """A writable copy of fixtures/coco (4 images + json)."""
    dst = tmp_path / "coco"
    shutil.copytree(fixtures_dir / "coco", dst)
    with open(dst / "test_coco.json") as f:
        data = json.load(f)
    return dst, data


def _write(dst, data):
    path = dst / "ann.json"
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def _first_person(data):
    return next(a for a in data["annotations"] if a["num_keypoints"] > 0)


def test_missing_image_file(small_coco):
    dst, data = small_coco
    name = data["images"][0]["file_name"]
    (dst / name).unlink()
    ds = CocoKeypointDataset(_write(dst, data), dst, COCO, train=False)
    index = ds.file_names.tolist().index(name)
    with pytest.raises(DataError, match=f"not found.*{name}"):
        ds[index]


def test_unreadable_image(small_coco):
    dst, data = small_coco
    name = data["images"][1]["file_name"]
    (dst / name).write_bytes(b"this is not a jpeg")
    ds = CocoKeypointDataset(_write(dst, data), dst, COCO, train=False)
    with pytest.raises(DataError, match=f"cannot decode.*{name}"):
        ds[ds.file_names.tolist().index(name)]


def test_truncated_jpeg(small_coco):
    dst, data = small_coco
    name = data["images"][2]["file_name"]
    raw = (dst / name).read_bytes()
    (dst / name).write_bytes(raw[: len(raw) // 2])
    ds = CocoKeypointDataset(_write(dst, data), dst, COCO, train=True)
    with pytest.raises(DataError, match=f"{name}.*truncated"):
        ds[ds.file_names.tolist().index(name)]


def test_image_size_not_matching_json(small_coco):
    dst, data = small_coco
    data["images"][0]["width"] += 7
    name = data["images"][0]["file_name"]
    ds = CocoKeypointDataset(_write(dst, data), dst, COCO, train=False)
    with pytest.raises(DataError, match=rf"{name} \(image id {data['images'][0]['id']}\) is .* says"):
        ds[ds.file_names.tolist().index(name)]


def test_category_keypoint_count_must_match_spec(small_coco):
    dst, _ = small_coco
    # the CrowdPose spec on COCO data: the category's keypoint list does not match
    with pytest.raises(DataError, match="17 keypoints but spec 'crowdpose' has 14"):
        CocoKeypointDataset(dst / "test_coco.json", dst, CROWDPOSE, train=True)


@pytest.mark.parametrize("fault, match", [
    ("nan", "NaN or infinite keypoint values"),
    ("inf", "NaN or infinite keypoint values"),
    ("negative_visibility", "negative keypoint visibility flags"),
    ("wrong_count", "48 keypoint values, expected 51"),
])
def test_structural_annotation_faults_name_file_and_annotation(small_coco, fault, match):
    dst, data = small_coco
    ann = _first_person(data)
    file_name = next(im["file_name"] for im in data["images"] if im["id"] == ann["image_id"])
    j = next(i for i in range(17) if ann["keypoints"][3 * i + 2] > 0)
    if fault == "nan":
        ann["keypoints"][3 * j] = float("nan")
    elif fault == "inf":
        ann["keypoints"][3 * j + 1] = float("inf")
    elif fault == "negative_visibility":
        ann["keypoints"][3 * j + 2] = -1
    else:
        ann["keypoints"] = ann["keypoints"][:-3]
    path = _write(dst, data)
    with pytest.raises(DataError, match=match) as err:
        CocoKeypointDataset(path, dst, COCO, train=True)
    message = str(err.value)
    assert str(path) in message and f"annotation id {ann['id']} " in message and file_name in message


def test_keypoints_outside_the_image_are_kept(small_coco):
    """Official behaviour: a labelled keypoint at x = -5 or beyond the width is a label, not a fault."""
    dst, data = small_coco
    ann = _first_person(data)
    info = next(im for im in data["images"] if im["id"] == ann["image_id"])
    labelled = [i for i in range(17) if ann["keypoints"][3 * i + 2] > 0]
    ann["keypoints"][3 * labelled[0]] = -5.0
    ann["keypoints"][3 * labelled[-1] + 1] = info["height"] + 3.0
    ds = CocoKeypointDataset(_write(dst, data), dst, COCO, train=True)
    i = int(np.nonzero(ds.image_ids == ann["image_id"])[0][0])
    joints, _ = ds.persons(i)
    expected = np.asarray(ann["keypoints"], float).reshape(17, 3)
    assert any(np.array_equal(person[:17], expected) for person in joints)
    ds.reseed(0)
    sample = ds[i]  # the augmentation decides what is inside the map
    assert np.isfinite(sample["heatmap"].numpy()).all() and np.isfinite(sample["offset"].numpy()).all()


# CrowdPose val annotations with a labelled keypoint outside the image: id -> (joint, x, y);
# all are the neck (joint 13), one at x = width (427), the others at negative x.
CROWDPOSE_VAL_OUTSIDE = {
    102509: (13, -1.0, 366.0), 106073: (13, -7.0, 197.0), 108848: (13, -1.0, 91.0),
    112681: (13, -1.0, 208.0), 119938: (13, -1.0, 202.0), 127751: (13, -1.0, 228.0),
    130161: (13, 427.0, 233.0), 154107: (13, -1.0, 221.0), 165131: (13, -3.0, 291.0),
}


@pytest.mark.parametrize("train", [True, False])
def test_every_crowdpose_val_annotation_loads(fixtures_dir, train):
    """All 8,527 annotations of the official CrowdPose val json index without error (no pixels
    are read until a sample is), the keypoints outside the image kept with their coordinates."""
    path = fixtures_dir / "crowdpose_val_gt/crowdpose_val.json"
    with open(path) as f:
        coco = json.load(f)
    assert len(coco["annotations"]) == 8527
    ds = CocoKeypointDataset(path, None, CROWDPOSE, train=train)
    assert ds.skipped == []
    if not train:
        assert len(ds) == len(coco["images"]) == 2000
        return
    assert set(ds.image_ids.tolist()) == {a["image_id"] for a in coco["annotations"]}
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    outside = {}
    for a in coco["annotations"]:
        kp = np.asarray(a["keypoints"], float).reshape(14, 3)
        w, h = sizes[a["image_id"]]
        out = (kp[:, 2] > 0) & ((kp[:, 0] < 0) | (kp[:, 1] < 0) | (kp[:, 0] >= w) | (kp[:, 1] >= h))
        for j in np.nonzero(out)[0]:
            outside[a["id"]] = (int(j), float(kp[j, 0]), float(kp[j, 1]))
        if a["id"] in CROWDPOSE_VAL_OUTSIDE:
            joints, _ = ds.persons(int(np.nonzero(ds.image_ids == a["image_id"])[0][0]))
            assert sum(np.array_equal(person[:14], kp) for person in joints) == 1, a["id"]
    assert outside == CROWDPOSE_VAL_OUTSIDE
    assert sum(x < 0 for _, x, _ in outside.values()) == 8  # the 8 that used to raise


def test_empty_annotation_list(small_coco):
    dst, data = small_coco
    data["annotations"] = []
    path = _write(dst, data)
    with pytest.raises(DataError, match="no image with annotations to train on"):
        CocoKeypointDataset(path, dst, COCO, train=True)
    val = CocoKeypointDataset(path, dst, COCO, train=False)  # evaluation on person-free images is fine
    assert len(val) == 4


def test_skip_mode_logs_and_drops(small_coco, caplog):
    dst, data = small_coco
    ann = _first_person(data)
    ann["keypoints"] = ann["keypoints"][:-3]
    bad_image = ann["image_id"]
    missing = next(im for im in data["images"] if im["id"] != bad_image)
    (dst / missing["file_name"]).unlink()
    with caplog.at_level(logging.WARNING):
        ds = CocoKeypointDataset(_write(dst, data), dst, COCO, train=True, on_bad_sample="skip")
    assert bad_image not in ds.image_ids.tolist()
    assert any(f"annotation id {ann['id']}" in r.message for r in caplog.records)
    assert bad_image not in {im["id"] for im in ds.ground_truth(data)["images"]}
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ids = {int(ds[i]["image_id"]) for i in range(len(ds))}
    assert missing["id"] not in ids  # replaced by another image, with a warning naming the file
    assert any(missing["file_name"] in r.message for r in caplog.records)


def test_unknown_image_id_and_missing_json(small_coco, tmp_path):
    dst, data = small_coco
    data["annotations"][0]["image_id"] = 123456789
    with pytest.raises(DataError, match="unknown image id 123456789"):
        CocoKeypointDataset(_write(dst, data), dst, COCO, train=True)
    with pytest.raises(DataError, match="annotation file not found"):
        CocoKeypointDataset(tmp_path / "nope.json", dst, COCO, train=True)


# ---------------------------------------------------------------- any categories: AP-10K
AP10K = load_spec("ap10k")


@pytest.fixture
def ap10k(fixtures_dir):
    folder = fixtures_dir / "ap10k"
    with open(folder / "test_ap10k.json") as f:
        return folder, json.load(f)


def test_ap10k_keeps_both_animals(ap10k):
    folder, data = ap10k
    assert {a["category_id"] for a in data["annotations"]} == {26, 1}  # a jaguar and an antelope
    ds = CocoKeypointDataset(folder / "test_ap10k.json", folder, AP10K, train=True, input_size=256)
    assert sorted(ds.image_ids.tolist()) == [4, 37516]
    for i, image_id in enumerate(ds.image_ids.tolist()):
        ann = next(a for a in data["annotations"] if a["image_id"] == image_id)
        joints, _ = ds.persons(i)
        assert len(joints) == 1
        np.testing.assert_array_equal(joints[0, :17], np.asarray(ann["keypoints"], float).reshape(17, 3))
    ds.reseed(0)
    sample = ds[0]  # the real image read, warped and flipped with AP-10K's flip pairs
    assert sample["heatmap"].shape == (18, 64, 64) and sample["heatmap"][17].max() > 0.9
    val = CocoKeypointDataset(folder / "test_ap10k.json", folder, AP10K, train=False)
    assert len(val) == 2 and val[0]["image"].shape == (867, 1200, 3)


def test_only_the_spec_categories_are_instances(ap10k):
    from dataclasses import replace

    folder, _ = ap10k
    jaguars = replace(AP10K, category_ids=(26,))
    ds = CocoKeypointDataset(folder / "test_ap10k.json", folder, jaguars, train=True)
    assert ds.image_ids.tolist() == [37516]
    with pytest.raises(DataError, match=r"test_ap10k.json: no annotation has a category of spec 'ap10k' "
                                        r"\(category_ids \[99\]\); the annotations have category_id \[1, 26\]"):
        CocoKeypointDataset(folder / "test_ap10k.json", folder, replace(AP10K, category_ids=(99,)), train=True)


def test_datamodule_annotation_errors_name_the_json_file(small_coco):
    """Through the DataModule (which parses the json itself), errors name the file, not the parsed dict."""
    from dekr.data.datamodule import DEKRDataModule

    dst, data = small_coco
    ann = _first_person(data)
    ann["keypoints"] = ann["keypoints"][:-3]
    path = _write(dst, data)
    split = {"annotations": str(path), "images": str(dst)}
    dm = DEKRDataModule(dataset="custom", root=str(dst), spec="coco", train_split=split, val_split=split,
                        input_size=64, num_workers=0)
    with pytest.raises(DataError, match="48 keypoint values, expected 51") as err:
        dm.dataset("train")
    assert str(err.value).startswith(f"{path}: annotation id {ann['id']} ")
