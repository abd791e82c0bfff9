"""EpochHistory: one row per training epoch, validation metrics only in the epochs that validated."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from dekr.callbacks import EpochHistory


class LoggingModel(BoringModel):
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> dict:
        out = super().training_step(batch, batch_idx)
        self.log("train/loss", out["loss"], on_epoch=True, on_step=False)
        return out

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/AP", float(self.current_epoch))  # the epoch it ran in, to tell rows apart


def test_validation_metrics_appear_once_per_validation(tmp_path: Path) -> None:
    history = EpochHistory()
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=5, check_val_every_n_epoch=2, limit_train_batches=2,
                        limit_val_batches=1, callbacks=[history], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1)
    trainer.fit(LoggingModel())
    rows = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert [row["epoch"] for row in rows] == [0, 1, 2, 3, 4]
    assert all("train/loss" in row for row in rows)
    # validation after epochs 1 and 3 (every 2nd); the sanity check before training is not one
    assert [(row["epoch"], row["val/AP"]) for row in rows if "val/AP" in row] == [(1, 1.0), (3, 3.0)]


def test_series_pairs_each_validated_epoch_with_its_value(tmp_path: Path) -> None:
    history = EpochHistory(metrics_file=None)
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=4, check_val_every_n_epoch=2,
                        limit_train_batches=2, limit_val_batches=1, callbacks=[history], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(LoggingModel())
    assert history.series("val/AP") == [(1, 1.0), (3, 3.0)]
    assert [epoch for epoch, _ in history.series("train/loss")] == [0, 1, 2, 3]
    assert history.series("nope") == []
    assert not (tmp_path / "metrics.json").exists()  # metrics_file None: nothing written
