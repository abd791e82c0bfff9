"""Checkpoints written atomically (a crash mid-save leaves the previous file intact), and a
ModelCheckpoint whose ``last.ckpt`` is always the latest epoch and whose ``best.ckpt`` is always the best."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dekr.callbacks.preemption import batch_end_is_safe
from dekr.checkpoint import CheckpointWriteError, atomic_torch_save


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


def publish_alias(target: str | os.PathLike, alias: str | os.PathLike) -> Path:
    """Make ``alias`` a second name of the file ``target`` in one step: a hard link (no second copy of
    the bytes), or a copy where the file system has no hard links (some FUSE and SMB mounts), made under
    a temporary name beside ``alias`` and renamed over it, so that a reader of ``alias`` sees the old
    file or the new one, never a part. (Not a symbolic link: some file systems have none, and some
    copy and sync tools drop them.) A failed copy (a full disk) raises
    :class:`CheckpointWriteError` and leaves the previous ``alias``."""
    alias = Path(alias)
    tmp = alias.with_name(f".{alias.name}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(target, tmp)
        except OSError:
            shutil.copyfile(target, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, alias)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointWriteError(f"cannot write {alias} (the best checkpoint {target} is intact): "
                                   f"{err.strerror or err}") from err
    return alias


class LastAndBestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that refreshes ``last.ckpt`` after *every* training epoch, whatever the
    validation interval, and optionally every ``every_n_minutes`` of training or ``every_n_train_steps``
    optimizer steps too (at batch ends where a checkpoint resumes exactly); the best checkpoint (its
    ``filename`` carries epoch and score) is also ``best.ckpt``, a stable name for commands and scripts.

    Lightning 2.6 writes ``last`` only when a top-k checkpoint was written in the same step, and with
    ``check_val_every_n_epoch > 1`` only in the epochs that validate, so a run killed before its first
    validation would lose every epoch. The epoch's checkpoint is written at the end of the epoch,
    after its validation (if any), so it carries the epoch's ``val/AP`` and best score.

    Args:
        every_n_minutes: also refresh ``last.ckpt`` at the first batch end (after an optimizer step)
            once this many minutes of training have passed since the last one: for long epochs on
            preemptible machines. ``None``: at epoch ends only.
        best_alias: the stable name of the best checkpoint in ``dirpath``, without ``.ckpt``; refreshed
            (:func:`publish_alias`, by rank zero) each time a new best is saved. ``None``: none. With
            ``save_top_k > 1`` it names the best of the top k.
        **kwargs: ``ModelCheckpoint``'s.
    """

    def __init__(self, *args: Any, every_n_minutes: Optional[float] = None,
                 best_alias: Optional[str] = "best", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if every_n_minutes is not None and not every_n_minutes > 0:
            raise ValueError(f"checkpoint.every_n_minutes must be positive, got {every_n_minutes}")
        self.every_n_minutes = every_n_minutes
        self.best_alias = best_alias
        self.last_saved_step = -1
        self._last_time_of_last = time.monotonic()

    def _save_last_checkpoint(self, trainer: "pl.Trainer", monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self.last_saved_step = trainer.global_step
            self._last_time_of_last = time.monotonic()

    @property
    def best_alias_path(self) -> Optional[str]:
        """``dirpath/<best_alias>.ckpt``; None without an alias or a folder."""
        if not self.best_alias or self.dirpath is None:
            return None
        return os.path.join(self.dirpath, self.best_alias + self.FILE_EXTENSION)

    def _update_best_and_save(self, current: Any, trainer: "pl.Trainer", monitor_candidates: dict) -> None:
        super()._update_best_and_save(current, trainer, monitor_candidates)
        alias = self.best_alias_path
        best = self.best_model_path
        # rank zero wrote the checkpoint (synchronously: AtomicCheckpointIO) and names it; a filename
        # without the score (``filename: best``) is the alias itself
        if trainer.is_global_zero and alias and best and os.path.abspath(best) != os.path.abspath(alias) \
                and _is_local_file_protocol(best) and os.path.isfile(best):
            publish_alias(best, alias)

    def save_last_now(self, trainer: "pl.Trainer") -> None:
        """Write ``last.ckpt`` at this point of the loop, unless it already holds this global step."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer) \
                and self.last_saved_step != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        super().on_train_start(trainer, pl_module)
        self._last_time_of_last = time.monotonic()

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        steps = self._every_n_train_steps
        if steps and trainer.global_step % steps == 0 and batch_end_is_safe(trainer, batch_idx):
            self.save_last_now(trainer)  # (Lightning writes last here only with a top-k checkpoint)
        if self.every_n_minutes is None or not batch_end_is_safe(trainer, batch_idx):  # (the same on every rank)
            return
        # Each rank's clock says whether it is due; the ranks decide together, since the save is a
        # collective under DDP and a rank whose clock differs must not skip it.
        due = time.monotonic() - self._last_time_of_last >= 60 * self.every_n_minutes
        if trainer.strategy.reduce_boolean_decision(due, all=False):
            self.save_last_now(trainer)

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # After the epoch's validation (Lightning runs it before this hook), whether or not it ran.
        self.save_last_now(trainer)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer) and not trainer.sanity_checking:
            self.save_last_now(trainer)
