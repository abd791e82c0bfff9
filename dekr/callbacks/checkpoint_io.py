"""Checkpoints written atomically (a crash mid-save leaves the previous file intact), and a
ModelCheckpoint whose ``last.ckpt`` is always the latest epoch."""
from __future__ import annotations

from typing import Any, Optional

import lightning.pytorch as pl
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dekr.checkpoint import atomic_torch_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves go through :func:`dekr.checkpoint.atomic_torch_save`
    (temporary file in the same folder, fsync, ``os.replace``). Remote URLs use Lightning's own
    save. Every checkpoint the trainer writes (ModelCheckpoint last/best, SLURM requeue ``hpc_ckpt``)
    passes through here."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not support storage_options, got {storage_options!r}")
        if not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)  # with the permissions a plain open() gives (dekr.file_publish)


class LastAndBestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that refreshes ``last.ckpt`` after *every* epoch.

    Lightning 2.6 writes ``last`` only when a top-k checkpoint was written in the same step, so a
    run whose monitored metric stops improving would resume from a stale ``last.ckpt``.
    """

    _last_step_of_last: int = -1

    def _save_last_checkpoint(self, trainer: "pl.Trainer", monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_step_of_last = trainer.global_step

    def _refresh_last(self, trainer: "pl.Trainer") -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer) \
                and self._last_step_of_last != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)
