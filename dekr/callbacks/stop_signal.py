"""Stopping a training on SIGTERM or Ctrl-C with its progress in ``last.ckpt`` and an honest exit.

Lightning acts on SIGTERM by itself: its handler sets ``trainer.received_sigterm``, and the loop raises
``SIGTERMException`` (a ``SystemExit`` with status 0) at the next training batch end or epoch end.
Nothing is saved on the way, and the process exits 0, which wrappers and schedulers take for success.
Ctrl-C (SIGINT) interrupts the loop wherever it is, also without a checkpoint.

:class:`CheckpointOnStop` makes both keep the work done: Ctrl-C is turned into the same SIGTERM path
(a second Ctrl-C interrupts at once), and at the batch end where Lightning will stop, ``last.ckpt`` is
refreshed if that batch ended an optimizer step (a checkpoint there resumes exactly). At the end of
an epoch ``last.ckpt`` is written anyway (:class:`~dekr.callbacks.LastAndBestCheckpoint`). A signal that
lands during validation stops at the next validation batch: the checkpoint is then the previous one.
``scripts/train.py`` reports where the run stopped and exits with 128 + the signal number.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


@contextmanager
def sigint_as_sigterm() -> Iterator[list[int]]:
    """Inside, Ctrl-C (SIGINT) sends this process SIGTERM, whose handling by Lightning stops its loops at
    the next batch; a second Ctrl-C interrupts at once. Yields a list that holds the signal that stopped
    the run (``signal.SIGINT`` after a Ctrl-C, else ``signal.SIGTERM``). Main thread only: elsewhere it
    changes nothing."""
    received = [signal.SIGTERM]
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_sigint(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        received[0] = signal.SIGINT
        log.warning("Ctrl-C: stopping at the next batch, keeping what is done (Ctrl-C again to stop at once)")
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class StopRecord:
    """Where a stopped training ended: the signal, its epoch (0-based) and global step, and the
    checkpoint that holds its progress with that checkpoint's global step (None: no checkpoint
    was written in this run)."""

    signal: int
    epoch: int
    global_step: int
    checkpoint: Optional[str]
    checkpoint_step: Optional[int]

    @property
    def exit_code(self) -> int:
        return 128 + self.signal

    def message(self) -> str:
        name = signal.Signals(self.signal).name
        kept = (f"progress up to global step {self.checkpoint_step} kept in {self.checkpoint}; resume with "
                "--ckpt_path last" if self.checkpoint else "no checkpoint was written in this run")
        return f"stopped by {name} in epoch {self.epoch}, global step {self.global_step}: {kept}"


class CheckpointOnStop(Callback):
    """Checkpoint at the batch end where a SIGTERM (or Ctrl-C) stops the training; see the module doc.

    After the stop, :attr:`stopped` says where and with which checkpoint.
    """

    def __init__(self) -> None:
        self.stopped: Optional[StopRecord] = None
        self._sigint: Optional[ExitStack] = None  # holds sigint_as_sigterm() while training
        self._received = [signal.SIGTERM]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stopped = None
        if self._sigint is None:
            self._sigint = ExitStack()
            self._received = self._sigint.enter_context(sigint_as_sigterm())

    def _uninstall(self) -> None:
        if self._sigint is not None:
            self._sigint.close()
            self._sigint = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # decided by all ranks together: the save is a collective under DDP
        if not trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False):
            return
        stepped = (batch_idx + 1) % max(int(trainer.accumulate_grad_batches), 1) == 0
        if stepped:
            for callback in trainer.checkpoint_callbacks:
                save_now = getattr(callback, "save_last_now", None)
                if save_now is not None:
                    save_now(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.received_sigterm:
            last = next((c for c in trainer.checkpoint_callbacks if getattr(c, "last_model_path", None)), None)
            self.stopped = StopRecord(int(self._received[0]), trainer.current_epoch, trainer.global_step,
                                      last.last_model_path if last else None,
                                      getattr(last, "last_saved_step", None) if last else None)
        self._uninstall()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._uninstall()
