"""scripts/train_rescore.py: OKS targets, training, and the result loading as a rescoring net."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dekr.data.spec import load_spec
from dekr.inference.rescore import load_rescore_net, rescore

from tests.helpers.paths import FIXTURES



def test_oks_targets_match_metric_rules():
    import train_rescore

    gt = json.loads((FIXTURES / "coco" / "test_coco.json").read_text())
    results = [{"image_id": a["image_id"], "keypoints": a["keypoints"], "score": 1.0}
               for a in gt["annotations"] if a["num_keypoints"] > 0]
    _, target = train_rescore.rescore_dataset(gt, results, load_spec("coco"))
    assert target == pytest.approx(np.ones(len(results)))


def test_train_rescore_crowdpose(tmp_path):
    import train_rescore

    gt_path = FIXTURES / "crowdpose_val_gt" / "example_crowdpose_val.json"
    preds = FIXTURES / "reference_preds" / "example_crowdpose_preds.json"
    out = train_rescore.main(["--spec", "crowdpose", "--gt", str(gt_path), "--preds", str(preds),
                              "--out", str(tmp_path / "r.pth"), "--epochs", "50", "--batch-size", "8"])
    spec = load_spec("crowdpose")
    net = load_rescore_net(out, spec)
    kp = torch.tensor([r["keypoints"] for r in json.loads(preds.read_text())], dtype=torch.float32).view(-1, 14, 3)
    scores = rescore(net, kp, torch.ones(len(kp)), spec)
    assert scores.shape == (len(kp),) and torch.isfinite(scores).all()
