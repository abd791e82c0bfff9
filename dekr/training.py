"""The trainer setup of a DEKR run, the same from Python and from ``scripts/train.py``::

    trainer = lightning.Trainer(max_epochs=140, **dekr.training.trainer_kwargs("runs/w32_coco"))
    trainer.fit(DEKRModule(...), datamodule=DEKRDataModule(...))

The run folder ``root_dir`` then holds ``checkpoints/last.ckpt`` (refreshed every epoch) and
``checkpoints/best-*.ckpt`` (by ``val/AP``, also named ``checkpoints/best.ckpt``), written atomically,
``last.ckpt`` also when SIGTERM or Ctrl-C stops the run, ``metrics.json`` (the final, best and per-epoch
figures), ``curve.png`` (the learning curve), ``provenance.json`` (command, git commit, packages, machine,
each session; the uncommitted diff in ``git.diff``) and the W&B run (``wandb/``; offline without an API
key or network, ``WANDB_MODE=disabled`` turns it off). The learning rate is logged once per epoch, and a SLURM
requeue signal is acted on at the next safe point of the loop (:class:`RequeueAtSafePoint`). Each
validation logs one INFO line and the fit's end a summary (:class:`ValidationReport`).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.io import CheckpointIO

from dekr.callbacks import (AtomicCheckpointIO, CheckpointOnStop, EpochHistory, ImagesPerSecond,
                            LastAndBestCheckpoint, PoseImageLogger, Provenance, RequeueAtSafePoint,
                            RNGStateCheckpoint, RunCosts, ValidationReport)
from dekr.loggers import WandbLogger

# The checkpoint callback of a run: the best epoch by validation OKS-AP, and the last one.
CHECKPOINT_DEFAULTS: dict[str, Any] = {
    "monitor": "val/AP", "mode": "max", "save_last": True, "save_top_k": 1,
    "filename": "best-epoch{epoch:03d}-ap{val/AP:.4f}", "auto_insert_metric_name": False,
}


def trainer_kwargs(root_dir: str | os.PathLike, callbacks: Iterable[Callback] | Callback | None = None,
                   logger: Logger | Iterable[Logger] | bool | None = None,
                   plugins: Iterable[Any] | Any | None = None) -> dict[str, Any]:
    """``lightning.Trainer`` keyword arguments for a run in ``root_dir``: ``default_root_dir``,
    ``callbacks``, ``logger`` and ``plugins``, given ones completed with the run defaults.

    Args:
        root_dir: the run folder (``trainer.default_root_dir``).
        callbacks: callbacks of your own; a :class:`LastAndBestCheckpoint` (``CHECKPOINT_DEFAULTS``),
            :class:`PoseImageLogger`, :class:`ImagesPerSecond`, :class:`RunCosts` (``metrics.json``'s
            ``costs``), :class:`EpochHistory`, :class:`ValidationReport` (a log line per validation, the
            end-of-run summary, ``curve.png``; after the history, whose records it reads) and
            :class:`RNGStateCheckpoint` (resumed runs draw what uninterrupted ones would) and
            :class:`CheckpointOnStop` (SIGTERM / Ctrl-C save ``last.ckpt`` before stopping) and
            :class:`Provenance` (``provenance.json``: command, git state, packages, machine) are added
            unless one of the kind is given, a ``LearningRateMonitor`` (per epoch) first when there
            is a logger, and :class:`RequeueAtSafePoint` last. Checkpoint callbacks without a
            ``dirpath`` write to ``root_dir/checkpoints``, a fixed folder that ``ckpt_path="last"``
            finds again.
        logger: ``None`` for a :class:`WandbLogger` (project ``dekr``); your logger(s), ``True``
            (Lightning's default) or ``False``. A ``WandbLogger`` without ``save_dir`` writes
            into ``root_dir``.
        plugins: Trainer plugins; :class:`AtomicCheckpointIO` is added unless a ``CheckpointIO``
            is given.
    """
    root = Path(root_dir)
    callbacks = _as_list(callbacks)
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        callbacks.append(LastAndBestCheckpoint(**CHECKPOINT_DEFAULTS))
    for kind in (PoseImageLogger, ImagesPerSecond, RunCosts, EpochHistory, ValidationReport,
                 RNGStateCheckpoint, CheckpointOnStop, Provenance):
        if not any(isinstance(c, kind) for c in callbacks):
            callbacks.append(kind())
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
            callback.dirpath = str(root / "checkpoints")
    if logger is None:
        logger = WandbLogger()
    loggers = [] if isinstance(logger, bool) else _as_list(logger)
    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)
    for each in loggers:
        if isinstance(each, WandbLogger) and each.save_dir is None:
            each.set_save_dir(root)
        if isinstance(each, WandbLogger) and checkpoint is not None:  # the best and last value in the summary
            each.summarize(checkpoint.monitor, checkpoint.mode)
    if (logger is True or loggers) and not any(isinstance(c, LearningRateMonitor) for c in callbacks):
        callbacks.insert(0, LearningRateMonitor(logging_interval="epoch"))
    # Last among the callbacks, so that the others' epoch-end state is in the requeue checkpoint
    # (Lightning runs the checkpoint callbacks' epoch end after every other callback's anyway).
    if not any(isinstance(c, RequeueAtSafePoint) for c in callbacks):
        callbacks.append(RequeueAtSafePoint())
    plugins = _as_list(plugins)
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return {"default_root_dir": str(root), "callbacks": callbacks, "logger": logger, "plugins": plugins}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return list(value)
    return [value]
