"""Proof that training learns a skeleton other than COCO's (slow, CPU).

``configs/demo_ap10k.yaml`` (the demo on synthetic figures of AP-10K's quadruped skeleton: 17
keypoints with their own names, flip pairs and OKS sigmas; :class:`dekr.data.synthetic_figures.SkeletonFigure`),
shortened to 18 epochs instead of 40 (4-5 minutes on one core, 4 on two): OKS-AP on its synthetic validation
figures, with the AP-10K sigmas, rises from the first validation to >= 0.5 (seen: 0.23 at epoch 9,
0.536 at 18). Batches of 2, as the config has: at about the same cost, 12 epochs in batches of 4
reached 0.28, 12 in batches of 2 (lr 0.003) 0.40.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts.test_train_learning import read_metrics, train_env
from tests.scripts.train_helpers import run_train

pytestmark = [pytest.mark.slow, pytest.mark.learning]

EPOCHS = 18


@pytest.mark.timeout(1800)
def test_learns_the_ap10k_skeleton_on_synthetic_figures(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_train(["--config", "demo_ap10k.yaml", "--trainer.max_epochs", str(EPOCHS),
               "--model.optim.milestones", f"[{EPOCHS - 3}]", "--trainer.check_val_every_n_epoch", str(EPOCHS // 2),
               "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
               "--pose_images.num_images", "0"],
              cwd=tmp_path, env=train_env(), timeout=1500)
    metrics = read_metrics(run_dir)
    aps = [row["val/AP"] for row in metrics["history"] if "val/AP" in row]
    assert len(aps) == 2 and aps[1] > aps[0], f"OKS-AP should rise after the first validation: {aps}"
    assert metrics["best_score"] >= 0.5, f"best OKS-AP {metrics['best_score']:.3f}; AP by validation {aps}"
