"""ValidationReport: one log line per validation with the best so far, a summary naming the run's files
when the fit ends, and the learning curve image, from a real fit."""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import cv2
import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from dekr.callbacks import EpochHistory, LastAndBestCheckpoint, ValidationReport
from dekr.callbacks.validation_report import best_of, draw_learning_curve, format_metric, validation_line

#: val/AP by epoch: rises, falls, rises to a tie (the earlier epoch stays the best)
AP_BY_EPOCH = [0.1, 0.5, 0.3, 0.5]


class ScoredModel(BoringModel):
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> dict:
        out = super().training_step(batch, batch_idx)
        self.log("train/epoch_loss", out["loss"], on_epoch=True, on_step=False)
        return out

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/AP", AP_BY_EPOCH[self.current_epoch])
        self.log("val/APL", -1.0)  # COCOeval's "undefined" (no large people)
        self.log("val/num_images", 64.0)


def fit(root: Path, **trainer: object) -> L.Trainer:
    checkpoint = LastAndBestCheckpoint(dirpath=root / "checkpoints", monitor="val/AP", mode="max",
                                       save_last=True, filename="best-epoch{epoch:03d}",
                                       auto_insert_metric_name=False)
    callbacks = [EpochHistory(), ValidationReport(), checkpoint]
    fitted = L.Trainer(default_root_dir=root, max_epochs=len(AP_BY_EPOCH), limit_train_batches=2,
                       limit_val_batches=1, logger=False, enable_progress_bar=False,
                       enable_model_summary=False, callbacks=callbacks, **trainer)
    fitted.fit(ScoredModel())
    return fitted


def report_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dekr.callbacks.validation_report"]


def test_a_line_per_validation_and_a_summary_naming_the_files(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="dekr.callbacks.validation_report")
    trainer = fit(tmp_path, num_sanity_val_steps=1)
    *lines, summary = report_lines(caplog)
    # the sanity check is no validation; AP, then the others without their prefix, APL undefined
    assert lines == [
        "epoch 0: val/AP 0.100 (best 0.100 at epoch 0) | APL n/a num_images 64",
        "epoch 1: val/AP 0.500 (best 0.500 at epoch 1) | APL n/a num_images 64",
        "epoch 2: val/AP 0.300 (best 0.500 at epoch 1) | APL n/a num_images 64",
        "epoch 3: val/AP 0.500 (best 0.500 at epoch 1) | APL n/a num_images 64",
    ]
    head, *files = summary.splitlines()
    assert head == "training finished after 4 epoch(s): best val/AP 0.500 at epoch 1, last 0.500 at epoch 3"
    checkpoints = tmp_path / "checkpoints"
    assert dict(re.split(r"\s{2,}", line.strip()) for line in files) == {
        "best checkpoint": str(checkpoints / "best.ckpt"), "last checkpoint": str(checkpoints / "last.ckpt"),
        "metrics": str(tmp_path / "metrics.json"), "learning curve": str(tmp_path / "curve.png")}
    # best.ckpt is the best epoch's checkpoint (epoch 1: the tie at epoch 3 does not replace it)
    assert os.path.samefile(checkpoints / "best.ckpt", checkpoints / "best-epoch001.ckpt")
    assert trainer.checkpoint_callback.best_model_path == str(checkpoints / "best-epoch001.ckpt")
    image = cv2.imread(str(tmp_path / "curve.png"))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 600  # AP and loss side by side


def test_validations_within_an_epoch_each_get_a_line(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="dekr.callbacks.validation_report")
    # 2 steps an epoch, a validation after each
    fit(tmp_path, val_check_interval=1, max_steps=4, num_sanity_val_steps=0)
    lines = report_lines(caplog)[:-1]
    assert [line.split(" |")[0] for line in lines] == [
        "epoch 0: val/AP 0.100 (best 0.100 at epoch 0)", "epoch 0: val/AP 0.100 (best 0.100 at epoch 0)",
        "epoch 1: val/AP 0.500 (best 0.500 at epoch 1)", "epoch 1: val/AP 0.500 (best 0.500 at epoch 1)"]


def test_figures_and_best() -> None:
    figures = [("val/AP", 0.8876), ("val/ARL", -1.0), ("val/AP50", math.nan), ("val/num_images", 64.0),
               ("val/loss", 0.012345)]
    assert [format_metric(*f) for f in figures] == ["0.888", "n/a", "n/a", "64", "0.01235"]
    assert best_of([(0, 0.2), (1, math.nan), (2, 0.4), (3, 0.4)]) == (2, 0.4)
    assert best_of([(0, 0.2), (1, 0.1)], mode="min") == (1, 0.1) and best_of([]) is None
    assert validation_line(5, {"val/loss": 0.5}, "val/AP", None) == "epoch 5: | loss 0.5"


def test_no_curve_without_a_validation() -> None:
    assert draw_learning_curve([{"epoch": 0, "train/epoch_loss": 1.0}], "val/AP", "max", "run") is None
    png = draw_learning_curve([{"epoch": 0, "val/AP": 0.2}], "val/AP", "max", "run")  # no loss: one panel
    assert png is not None and png.startswith(b"\x89PNG")
