"""LastAndBestCheckpoint: ``last.ckpt`` after every training epoch whatever the validation interval,
and every ``every_n_minutes`` within epochs (at batch ends after an optimizer step)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from dekr.callbacks import AtomicCheckpointIO, LastAndBestCheckpoint


class ValidatingModel(BoringModel):
    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/AP", 1.0 / (1 + self.current_epoch))


class RecordingIO(AtomicCheckpointIO):
    """The real atomic writes, with the (file name, global step) of each."""

    def __init__(self) -> None:
        self.saved: list[tuple[str, int]] = []

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        super().save_checkpoint(checkpoint, path, storage_options)
        self.saved.append((Path(path).name, checkpoint["global_step"]))


def fit(tmp_path: Path, checkpoint: LastAndBestCheckpoint, **trainer: Any) -> RecordingIO:
    io = RecordingIO()
    options = {"max_epochs": 3, "limit_train_batches": 4, "limit_val_batches": 1, **trainer}
    L.Trainer(default_root_dir=tmp_path, callbacks=[checkpoint], plugins=[io], logger=False,
              enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **options) \
        .fit(ValidatingModel())
    return io


def test_last_after_every_epoch_when_validation_is_rare(tmp_path: Path) -> None:
    checkpoint = LastAndBestCheckpoint(dirpath=tmp_path, monitor="val/AP", mode="max", save_last=True,
                                       filename="best")
    io = fit(tmp_path, checkpoint, check_val_every_n_epoch=5)  # no validation in the 3 epochs
    assert [step for name, step in io.saved if name == "last.ckpt"] == [4, 8, 12]
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 12


def test_last_once_per_epoch_when_every_epoch_validates(tmp_path: Path) -> None:
    checkpoint = LastAndBestCheckpoint(dirpath=tmp_path, monitor="val/AP", mode="max", save_last=True,
                                       filename="best")
    io = fit(tmp_path, checkpoint, check_val_every_n_epoch=1)
    assert [step for name, step in io.saved if name == "last.ckpt"] == [4, 8, 12]
    assert [step for name, step in io.saved if name == "best.ckpt"] == [4]  # val/AP falls after epoch 0


def test_every_n_minutes_writes_last_within_epochs(tmp_path: Path) -> None:
    checkpoint = LastAndBestCheckpoint(dirpath=tmp_path, monitor="val/AP", mode="max", save_last=True,
                                       filename="best", every_n_minutes=1e-9)  # due at every batch end
    io = fit(tmp_path, checkpoint, max_epochs=2, check_val_every_n_epoch=1)
    # every batch end after a step except each epoch's last (validation and the epoch end follow it),
    # where the epoch's own checkpoint is written
    assert [step for name, step in io.saved if name == "last.ckpt"] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_every_n_minutes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="checkpoint.every_n_minutes must be positive, got 0"):
        LastAndBestCheckpoint(every_n_minutes=0)


def test_every_n_train_steps_writes_last_within_epochs(tmp_path: Path) -> None:
    """Lightning's own step interval (``--checkpoint.every_n_train_steps``), with the epoch ends added."""
    checkpoint = LastAndBestCheckpoint(dirpath=tmp_path, monitor="val/AP", mode="max", save_last=True,
                                       filename="best", every_n_train_steps=3)
    io = fit(tmp_path, checkpoint, max_epochs=2, check_val_every_n_epoch=1)
    lasts = [step for name, step in io.saved if name == "last.ckpt"]
    assert {3, 4, 6, 8} <= set(lasts) and lasts == sorted(lasts)
