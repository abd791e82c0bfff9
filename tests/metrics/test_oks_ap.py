"""OKSAP: golden numbers from shared/data/README.md, both backends, DDP, bad input."""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest
import torch

from dekr.data.spec import load_spec
from dekr.metrics.oks_ap import BACKENDS, COCO_KEYS, CROWD_KEYS, OKSAP, format_table

from tests.helpers.paths import FIXTURES

COCO_GT = FIXTURES / "coco" / "test_coco.json"
COCO_PREDS = FIXTURES / "reference_preds" / "example_coco_preds.json"
CROWD_GT = FIXTURES / "crowdpose_val_gt" / "example_crowdpose_val.json"
CROWD_PREDS = FIXTURES / "reference_preds" / "example_crowdpose_preds.json"
CROWD_VAL = FIXTURES / "crowdpose_val_gt"
CROWD_TEST = FIXTURES / "crowdpose" / "test_crowdpose.json"
MINICOCO_VAL = FIXTURES / "coco_minicoco" / "annotations" / "person_keypoints_val2017.json"


def _crowd_val_path():
    files = sorted(p for p in CROWD_VAL.glob("*.json") if p.name != "example_crowdpose_val.json")
    assert files, "2000-image CrowdPose val annotations missing"
    return files[0]


def _gt_as_results(gt: dict, score: float = 1.0) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": score}
            for a in gt["annotations"] if not a.get("iscrowd", 0) and a.get("num_keypoints", 1) > 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_coco(backend):
    metric = OKSAP(COCO_GT, "coco", backend=backend)
    metric.update_from_results(json.loads(COCO_PREDS.read_text()))
    out = metric.compute()
    assert set(out) == set(COCO_KEYS)
    assert out["AP"].item() == pytest.approx(0.8609, abs=5e-5)
    assert out["AP50"].item() == pytest.approx(0.9931, abs=5e-5)
    assert out["AP75"].item() == pytest.approx(0.9109, abs=5e-5)
    assert out["AR"].item() == pytest.approx(0.875, abs=5e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_crowdpose(backend):
    metric = OKSAP(CROWD_GT, "crowdpose", backend=backend)
    metric.update_from_results(json.loads(CROWD_PREDS.read_text()))
    out = {k: v.item() for k, v in metric.compute().items()}
    assert set(out) == set(CROWD_KEYS)
    expected = {"AP": 0.7877, "AP50": 0.9881, "AP75": 0.7314, "AP_easy": 1.0, "AP_medium": 0.9802, "AP_hard": 0.4116}
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=5e-5), key


@pytest.mark.parametrize("gt_path,spec", [(COCO_GT, "coco"), (MINICOCO_VAL, "coco"), (CROWD_GT, "crowdpose"),
                                          (CROWD_TEST, "crowdpose")])
def test_ground_truth_fed_back_scores_one(gt_path, spec):
    gt = json.loads(gt_path.read_text())
    metric = OKSAP(gt, spec)  # in-memory ground truth
    metric.update_from_results(_gt_as_results(gt), image_ids=[img["id"] for img in gt["images"]])
    out = metric.compute()
    assert out["AP"].item() == pytest.approx(1.0)
    assert out["AR"].item() == pytest.approx(1.0)


def test_in_memory_ground_truth_not_mutated_and_equal_to_path():
    gt = json.loads(CROWD_GT.read_text())
    before = json.dumps(gt, sort_keys=True)
    preds = json.loads(CROWD_PREDS.read_text())
    a, b = OKSAP(gt, "crowdpose"), OKSAP(CROWD_GT, "crowdpose")
    a.update_from_results(preds)
    b.update_from_results(preds)
    assert {k: v.item() for k, v in a.compute().items()} == {k: v.item() for k, v in b.compute().items()}
    assert json.dumps(gt, sort_keys=True) == before


def test_backends_identical_on_noisy_crowdpose_val():
    path = _crowd_val_path()
    gt = json.loads(path.read_text())
    assert len(gt["images"]) == 2000
    rng = np.random.default_rng(0)
    results = []
    for ann in gt["annotations"]:
        if ann["num_keypoints"] == 0 and sum(ann["keypoints"][2::3]) == 0:
            continue
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        w, h = ann["bbox"][2], ann["bbox"][3]
        noise = rng.normal(0, 0.03 * np.sqrt(max(w * h, 1.0)), size=(len(kp), 2))
        kp[:, :2] += noise
        kp[:, 2] = rng.uniform(0.1, 1.0, len(kp))
        results.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                        "score": float(rng.uniform(0.2, 1.0))})
    # a few false positives
    for img in gt["images"][:300]:
        kp = np.concatenate([rng.uniform(0, [img["width"], img["height"]], (14, 2)), np.ones((14, 1))], 1)
        results.append({"image_id": img["id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                        "score": float(rng.uniform(0, 0.3))})
    metric = OKSAP(gt, "crowdpose")
    metric.update_from_results(results, image_ids=[img["id"] for img in gt["images"]])
    fast = metric.compute_with("faster_coco_eval")
    ref = metric.compute_with("pycocotools")
    assert fast == ref
    assert 0.3 < ref["AP"] < 0.99


def test_duplicated_images_are_counted_once():
    preds = json.loads(COCO_PREDS.read_text())
    once, twice = OKSAP(COCO_GT, "coco"), OKSAP(COCO_GT, "coco")
    once.update_from_results(preds)
    twice.update_from_results(preds)
    twice.update_from_results([p for p in preds if p["image_id"] == preds[0]["image_id"]])  # sampler padding
    assert once.compute()["AP"].item() == twice.compute()["AP"].item()


def test_tensor_update_and_reset():
    gt = json.loads(COCO_GT.read_text())
    metric = OKSAP(gt, "coco")
    by_image: dict[int, list] = {}
    for r in _gt_as_results(gt):
        by_image.setdefault(r["image_id"], []).append(r["keypoints"])
    batch = [{"image_id": i, "keypoints": torch.tensor(k, dtype=torch.float32).view(-1, 17, 3),
              "scores": torch.ones(len(k))} for i, k in by_image.items()]
    metric.update(batch[:2])
    metric.update(batch[2:])
    assert metric.compute()["AP"].item() == pytest.approx(1.0)
    metric.reset()
    metric.update([{"image_id": 785, "keypoints": torch.zeros(0, 17, 3), "scores": torch.zeros(0)}])
    assert metric.compute()["AP"].item() == 0.0


def test_images_all_counts_unseen_images():
    preds = [p for p in json.loads(COCO_PREDS.read_text()) if p["image_id"] == 785]
    seen, full = OKSAP(COCO_GT, "coco"), OKSAP(COCO_GT, "coco", images="all")
    seen.update_from_results(preds)
    full.update_from_results(preds)
    assert full.compute()["AR"].item() < seen.compute()["AR"].item()


# ---- bad input ------------------------------------------------------------------------------
def test_unknown_image_id_raises():
    metric = OKSAP(COCO_GT, "coco")
    with pytest.raises(ValueError, match="not in the ground truth"):
        metric.update([{"image_id": 123456789, "keypoints": torch.zeros(1, 17, 3), "scores": torch.ones(1)}])


def test_nan_coordinates_raise():
    metric = OKSAP(COCO_GT, "coco")
    kp = torch.zeros(1, 17, 3)
    kp[0, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        metric.update([{"image_id": 785, "keypoints": kp, "scores": torch.ones(1)}])


def test_wrong_keypoint_count_raises():
    metric = OKSAP(COCO_GT, "coco")
    with pytest.raises(RuntimeError):
        metric.update([{"image_id": 785, "keypoints": torch.zeros(1, 14, 3), "scores": torch.ones(1)}])
    with pytest.raises(ValueError, match="keypoints"):
        OKSAP(CROWD_GT, "coco")  # 14-keypoint annotations against the 17-keypoint spec


def test_empty_prediction_list_gives_zero(caplog):
    for gt, spec, keys in [(COCO_GT, "coco", COCO_KEYS), (CROWD_GT, "crowdpose", CROWD_KEYS)]:
        metric = OKSAP(gt, spec)
        metric.update([])
        out = metric.compute()
        assert set(out) == set(keys) and all(v.item() == 0.0 for v in out.values())
    assert "no predictions" in caplog.text


def test_crowdpose_without_area_uses_bbox_and_coco_without_area_raises():
    gt = json.loads(CROWD_GT.read_text())
    assert all("area" not in a for a in gt["annotations"])
    OKSAP(gt, "crowdpose")  # fine: area = 0.53 * bbox
    with pytest.raises(ValueError, match="no 'area'"):
        OKSAP(gt, "crowdpose", crowd=False)


def test_missing_num_keypoints_is_counted(caplog):
    gt = json.loads(COCO_GT.read_text())
    for a in gt["annotations"]:
        del a["num_keypoints"]
    metric = OKSAP(gt, "coco")
    assert "num_keypoints" in caplog.text
    metric.update_from_results(json.loads(COCO_PREDS.read_text()))
    assert metric.compute()["AP"].item() == pytest.approx(0.8609, abs=5e-5)


def test_crowdpose_without_crowd_index_raises():
    gt = json.loads(CROWD_GT.read_text())
    del gt["images"][0]["crowdIndex"]
    with pytest.raises(ValueError, match="crowdIndex"):
        OKSAP(gt, "crowdpose")


def test_no_temporary_files_left_behind():
    tmp = tempfile.gettempdir()
    before = set(os.listdir(tmp))
    metric = OKSAP(CROWD_GT, "crowdpose")
    metric.update_from_results(json.loads(CROWD_PREDS.read_text()))
    for backend in BACKENDS:
        metric.compute_with(backend)
    assert set(os.listdir(tmp)) <= before


def test_spec_sigmas_are_used():
    spec = load_spec("coco")
    gt = json.loads(COCO_GT.read_text())
    preds = json.loads(COCO_PREDS.read_text())
    from dataclasses import replace
    wide = replace(spec, sigmas=tuple(s * 3 for s in spec.sigmas))
    a, b = OKSAP(gt, spec), OKSAP(gt, wide)
    a.update_from_results(preds)
    b.update_from_results(preds)
    assert b.compute()["AP"].item() > a.compute()["AP"].item()


# ---- any categories: AP-10K (species 26 and 1, evaluated pooled) ---------------------------
AP10K_GT = FIXTURES / "ap10k" / "test_ap10k.json"


def _ap10k_results(category_id=None, shift_jaguar: float = 0.0) -> list[dict]:
    """The AP-10K ground truth as results (each with its own category, or ``category_id``); the jaguar's
    labelled keypoints moved right by ``shift_jaguar`` pixels."""
    gt = json.loads(AP10K_GT.read_text())
    results = []
    for ann in gt["annotations"]:
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        if ann["category_id"] == 26:
            kp[kp[:, 2] > 0, 0] += shift_jaguar
        results.append({"image_id": ann["image_id"], "category_id": category_id or ann["category_id"],
                        "keypoints": kp.reshape(-1).tolist(), "score": 1.0})
    return results


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("category_id", [None, 1], ids=["own-categories", "pooled-id"])
def test_ap10k_ground_truth_fed_back_scores_one(backend, category_id):
    gt = json.loads(AP10K_GT.read_text())
    assert sorted(a["category_id"] for a in gt["annotations"]) == [1, 26]
    metric = OKSAP(AP10K_GT, "ap10k", backend=backend)
    metric.update_from_results(_ap10k_results(category_id))
    out = metric.compute()
    assert out["AP"].item() == pytest.approx(1.0) and out["AR"].item() == pytest.approx(1.0)


def test_ap10k_perturbed_jaguar_scores_below_one_with_ap10k_sigmas():
    # Only the jaguar (category 26, not the pooled id 1) moves: it must be evaluated, with AP-10K's sigmas.
    metric = OKSAP(AP10K_GT, "ap10k")
    metric.update_from_results(_ap10k_results(shift_jaguar=25.0))
    fast, ref = metric.compute_with("faster_coco_eval"), metric.compute_with("pycocotools")
    assert fast == ref
    assert 0.2 < ref["AP"] < 1.0 and ref["AP50"] == pytest.approx(1.0)
    from dataclasses import replace
    wide = OKSAP(AP10K_GT, replace(load_spec("ap10k"), sigmas=(0.2,) * 17))
    wide.update_from_results(_ap10k_results(shift_jaguar=25.0))
    assert wide.compute()["AP"].item() > ref["AP"]


def test_ap10k_results_are_written_with_an_id_the_ground_truth_has():
    from pycocotools.coco import COCO

    gt = json.loads(AP10K_GT.read_text())
    metric = OKSAP(gt, "ap10k")
    metric.update_from_results(_ap10k_results())
    results, seen = metric.results()
    assert {r["category_id"] for r in results} == {1} and seen == [4, 37516]
    assert 1 in {c["id"] for c in gt["categories"]}
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    assert len(coco.loadRes(results).getAnnIds(catIds=[1])) == 2


def test_categories_outside_the_spec():
    from dataclasses import replace

    jaguars = replace(load_spec("ap10k"), category_ids=(26,))
    metric = OKSAP(AP10K_GT, jaguars)
    assert [a["id"] for a in metric.gt["annotations"]] == [9284]  # the antelope is not a jaguar
    with pytest.raises(ValueError, match=r"category_id \[1\], not among the spec's categories \[26\]"):
        metric.update_from_results(_ap10k_results())
    metric.update_from_results([r for r in _ap10k_results() if r["category_id"] == 26])
    assert metric.compute()["AP"].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"no ground-truth annotation has a category of spec 'ap10k'.*\[1, 26\]"):
        OKSAP(AP10K_GT, replace(jaguars, category_ids=(99,)))


# ---- DDP -----------------------------------------------------------------------------------
def _ddp_worker(rank: int, world_size: int, port: int, queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    preds = json.loads(COCO_PREDS.read_text())
    image_ids = sorted({p["image_id"] for p in preds})  # 4 images; rank r takes images r, r+2
    mine = image_ids[rank::world_size]
    metric = OKSAP(COCO_GT, "coco")
    metric.update_from_results([p for p in preds if p["image_id"] in mine])
    if rank == 1:  # DistributedSampler padding repeats an image on the last rank
        metric.update_from_results([p for p in preds if p["image_id"] == image_ids[0]])
    ap = metric.compute()["AP"].item()
    # a rank that saw nothing (e.g. a tiny last shard) must not break the gather
    lonely = OKSAP(COCO_GT, "coco")
    if rank == 0:
        lonely.update_from_results(preds)
    lonely_ap = lonely.compute()["AP"].item()
    queue.put((rank, (ap, lonely_ap)))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_ranks_gather_lists():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results[0][0] == pytest.approx(0.8609, abs=5e-5)
    assert results[0][1] == pytest.approx(0.8609, abs=5e-5)
    assert results[1] == results[0]


def test_format_table_shows_undefined_metrics_as_na():
    """COCOeval's -1 (APL without large people, AP_easy of a CrowdPose subset) is not an AP of -100."""
    stats = {"AP": 0.6789, "AP50": 1.0, "AP75": 0.0, "APM": 0.5, "APL": -1.0, "AR": 0.7, "AR50": 1.0,
             "AR75": 0.0, "ARM": 0.55, "ARL": -1.0}
    head, _, row = format_table(stats, "w32").splitlines()
    assert head == "| model | AP | AP50 | AP75 | APM | APL | AR | AR50 | AR75 | ARM | ARL |"
    assert row == "| w32 | 67.9 | 100.0 | 0.0 | 50.0 | n/a | 70.0 | 100.0 | 0.0 | 55.0 | n/a |"
    assert "-100" not in row and stats["APL"] == -1.0  # the values themselves are left as they are

    crowd = {k: 0.5 for k in CROWD_KEYS} | {"AP_easy": -1.0}
    cells = format_table(crowd).splitlines()[2].strip("| ").split(" | ")
    assert dict(zip(CROWD_KEYS, cells))["AP_easy"] == "n/a" and cells.count("50.0") == len(CROWD_KEYS) - 1
