"""dekr.training.trainer_kwargs: the run defaults a Python Trainer gets, completed around what the
caller gives. (A real fit with them, next to the CLI's: tests/scripts/test_train.py.)"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dekr.callbacks import (AtomicCheckpointIO, CheckpointOnStop, EpochHistory, ImagesPerSecond, LastAndBestCheckpoint,
                            PoseImageLogger, Provenance, RequeueAtSafePoint, RNGStateCheckpoint, RunCosts,
                            ValidationReport)
from dekr.loggers import WandbLogger
from dekr.training import CHECKPOINT_DEFAULTS, trainer_kwargs


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    kwargs = trainer_kwargs(tmp_path / "run")
    assert kwargs["default_root_dir"] == str(tmp_path / "run")
    kinds = [type(c) for c in kwargs["callbacks"]]
    # the report after the history, whose records it reads
    assert kinds == [LearningRateMonitor, LastAndBestCheckpoint, PoseImageLogger, ImagesPerSecond, RunCosts,
                     EpochHistory, ValidationReport, RNGStateCheckpoint, CheckpointOnStop, Provenance,
                     RequeueAtSafePoint]
    checkpoint = kwargs["callbacks"][1]
    assert checkpoint.dirpath == str(tmp_path / "run" / "checkpoints")
    assert (checkpoint.monitor, checkpoint.mode, checkpoint.save_last, checkpoint.save_top_k) == \
        (CHECKPOINT_DEFAULTS["monitor"], "max", True, 1)
    assert isinstance(kwargs["logger"], WandbLogger) and kwargs["logger"].save_dir == str(tmp_path / "run")
    assert kwargs["logger"]._summaries == {"val/AP": "max"}  # the checkpoint's monitor: best and last kept
    assert [type(p) for p in kwargs["plugins"]] == [AtomicCheckpointIO]

    trainer = L.Trainer(accelerator="cpu", devices=1, enable_progress_bar=False, **kwargs)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert trainer.checkpoint_callback is checkpoint and isinstance(trainer.callbacks[-1], ModelCheckpoint)


def test_given_ones_are_kept_and_completed(tmp_path: Path) -> None:
    own = ModelCheckpoint(monitor="val/AP50", mode="max")
    history = EpochHistory(metrics_file=None)
    io = TorchCheckpointIO()
    kwargs = trainer_kwargs(tmp_path, callbacks=[own, history], logger=False, plugins=io)
    assert kwargs["logger"] is False
    assert [type(c) for c in kwargs["callbacks"]] == [ModelCheckpoint, EpochHistory, PoseImageLogger,
                                                       ImagesPerSecond, RunCosts, ValidationReport,
                                                       RNGStateCheckpoint, CheckpointOnStop, Provenance,
                                                       RequeueAtSafePoint]  # no LR monitor
    assert kwargs["callbacks"][0] is own and own.dirpath == str(tmp_path / "checkpoints")
    assert kwargs["callbacks"][1] is history and kwargs["plugins"] == [io]
    assert LearningRateMonitor in [type(c) for c in trainer_kwargs(tmp_path, logger=True)["callbacks"]]
