"""LastAndBestCheckpoint: ``last.ckpt`` after every training epoch whatever the validation interval,
and every ``every_n_minutes`` within epochs (at batch ends after an optimizer step); ``best.ckpt``, the
stable name of the best checkpoint."""
from __future__ import annotations

import errno
import os
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


class RisingThenFallingModel(BoringModel):
    """val/AP 0.1, 0.3, 0.2 in epochs 0, 1, 2: the best moves once, then stays."""

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/AP", [0.1, 0.3, 0.2][self.current_epoch])


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


def fit_scored(tmp_path: Path) -> LastAndBestCheckpoint:
    checkpoint = LastAndBestCheckpoint(dirpath=tmp_path, monitor="val/AP", mode="max", save_last=True,
                                       filename="best-epoch{epoch:03d}", auto_insert_metric_name=False)
    L.Trainer(default_root_dir=tmp_path, callbacks=[checkpoint], plugins=[AtomicCheckpointIO()], logger=False,
              enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, max_epochs=3,
              limit_train_batches=2, limit_val_batches=1).fit(RisingThenFallingModel())
    return checkpoint


def test_best_ckpt_is_the_best_checkpoint_under_a_stable_name(tmp_path: Path) -> None:
    checkpoint = fit_scored(tmp_path)
    assert checkpoint.best_model_path == str(tmp_path / "best-epoch001.ckpt")
    assert checkpoint.best_alias_path == str(tmp_path / "best.ckpt")
    assert os.path.samefile(tmp_path / "best.ckpt", tmp_path / "best-epoch001.ckpt")  # a hard link: no copy
    assert torch.load(tmp_path / "best.ckpt", weights_only=False)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-epoch001.ckpt", "best.ckpt", "last.ckpt"]


def test_best_ckpt_is_a_copy_where_the_file_system_has_no_hard_links(tmp_path: Path, monkeypatch) -> None:
    # vfat and some FUSE / SMB mounts refuse link() with EPERM; no such file system can be mounted here
    def no_hard_links(src: Any, dst: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    fit_scored(tmp_path)
    best, alias = tmp_path / "best-epoch001.ckpt", tmp_path / "best.ckpt"
    assert not os.path.samefile(alias, best) and alias.read_bytes() == best.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-epoch001.ckpt", "best.ckpt", "last.ckpt"]


def test_no_alias_when_asked_for_none(tmp_path: Path) -> None:
    checkpoint = LastAndBestCheckpoint(dirpath=tmp_path, monitor="val/AP", mode="max", filename="top",
                                       best_alias=None)
    fit(tmp_path, checkpoint, check_val_every_n_epoch=1)
    assert checkpoint.best_alias_path is None and [p.name for p in tmp_path.iterdir()] == ["top.ckpt"]
