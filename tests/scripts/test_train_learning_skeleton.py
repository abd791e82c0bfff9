"""Proof that training learns a skeleton other than COCO's (slow, CPU).

The demo (configs/demo.yaml) with the data of ``configs/data/synthetic_ap10k.yaml``: synthetic
figures of AP-10K's quadruped skeleton (17 keypoints with their own names, flip pairs and OKS
sigmas; :class:`dekr.data.synthetic_figures.SkeletonFigure`), fewer and smaller images and fewer
epochs than the demo, so that the whole run costs a few minutes on the 2 CPU cores of CI. OKS-AP on
its synthetic validation figures, with the AP-10K sigmas, rises from the first validation to >= 0.5.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.scripts.test_train_learning import read_metrics, train_env
from tests.scripts.train_helpers import REPO, run_train

pytestmark = pytest.mark.slow

MAX_EPOCHS = 16


def skeleton_config() -> dict:
    """The demo's model on configs/data/synthetic_ap10k.yaml, validated twice."""
    data = yaml.safe_load((REPO / "configs" / "data" / "synthetic_ap10k.yaml").read_text())
    return {"data": data,
            "model": {"spec": data["init_args"]["spec"], "net": {"num_keypoints": 17},
                      "optim": {"milestones": [MAX_EPOCHS - 3]}},
            "trainer": {"max_epochs": MAX_EPOCHS, "check_val_every_n_epoch": MAX_EPOCHS // 2}}


@pytest.mark.timeout(1800)
def test_learns_the_ap10k_skeleton_on_synthetic_figures(tmp_path: Path) -> None:
    config = tmp_path / "ap10k.yaml"
    config.write_text(yaml.safe_dump(skeleton_config()))
    run_dir = tmp_path / "run"
    run_train(["--config", "demo.yaml", "--config", str(config), "--trainer.default_root_dir", str(run_dir),
               "--trainer.enable_progress_bar", "false", "--pose_images.num_images", "0"],
              cwd=tmp_path, env=train_env(), timeout=1500)
    metrics = read_metrics(run_dir)
    aps = [row["val/AP"] for row in metrics["history"] if "val/AP" in row]
    assert len(aps) == 2 and aps[1] > aps[0], f"OKS-AP should rise after the first validation: {aps}"
    assert metrics["best_score"] >= 0.5, f"best OKS-AP {metrics['best_score']:.3f}; AP by validation {aps}"
