"""CocoWriter with a non-person spec: AP-10K poses written with an id its ground truth accepts."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from dekr.data.dataset import read_image_rgb
from dekr.data.spec import load_spec
from dekr.inference.outputs import CocoWriter
from dekr.inference.result import PoseResult
from dekr.metrics.oks_ap import OKSAP

from tests.helpers.paths import FIXTURES

AP10K = FIXTURES / "ap10k"


def test_ap10k_results_use_the_spec_category_and_evaluate_to_one(tmp_path):
    spec = load_spec("ap10k")
    gt = json.loads((AP10K / "test_ap10k.json").read_text())
    writer = CocoWriter(tmp_path, spec)
    for info in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == info["id"]]
        keypoints = np.asarray([a["keypoints"] for a in anns], dtype=np.float32).reshape(-1, 17, 3)
        writer.add(PoseResult(keypoints, np.ones(len(anns), np.float32), read_image_rgb(AP10K / info["file_name"]),
                              spec, info["file_name"], info["id"]))
    writer.write()
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["category_id"] for r in results] == [1, 1]  # the jaguar too: categories are pooled
    images = COCO(str(tmp_path / "images.json"))
    assert images.dataset["categories"] == [{"id": 1, "name": "ap10k", "supercategory": "ap10k",
                                             "keypoints": list(spec.keypoint_names),
                                             "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton]}]
    assert len(images.loadRes(str(tmp_path / "results.json")).getAnnIds(catIds=[1])) == 2
    metric = OKSAP(AP10K / "test_ap10k.json", spec)
    metric.update_from_results(results)
    assert metric.compute()["AP"].item() == pytest.approx(1.0)
