"""SLURM preemption / time-limit requeue at a safe point of the training loop.

Lightning's ``SLURMEnvironment`` (``auto_requeue=True``) saves ``hpc_ckpt_<n>.ckpt`` and runs
``scontrol requeue`` from *inside* the SIGUSR1 handler, i.e. at whatever Python bytecode the main
thread happens to be executing. The loop progress counters it saves can then disagree with each
other: a signal that lands just after the optimizer step was counted (``global_step``) but before
the batch was marked processed makes the resumed run train that batch again (one extra step:
``global_step`` 21 instead of 20); one that lands inside ``optimizer.step`` (weights already
updated, step not yet counted) applies an update twice; one at ``on_train_epoch_start`` loses the
whole epoch on resume; one in another callback's epoch-end hook loses that callback's epoch state.
And under DDP every rank runs the handler whenever its own signal arrives, so the ranks enter the
checkpoint barrier from different places in the loop.

:class:`RequeueAtSafePoint` keeps Lightning's handler but defers it: the signal only sets a flag,
and the handler (checkpoint + requeue) runs at the next point where Lightning itself supports
resuming, with all ranks agreeing on which one.
"""
from __future__ import annotations

import logging
import math
import signal
import threading
from typing import Any, Callable, Optional

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


class RequeueAtSafePoint(Callback):
    """Runs Lightning's SLURM auto-requeue handler (save ``hpc_ckpt_<n>.ckpt``, ``scontrol requeue``)
    at the next safe point after the requeue signal instead of inside the signal handler.

    Safe points (all ranks decide together, from a flag reduced over the ranks):

    * ``on_train_batch_end`` after an optimizer step, unless validation or the epoch end follows that
      batch (a checkpoint there makes Lightning skip that validation on resume);
    * ``on_train_epoch_end`` (after validation and after the epoch-end hooks of the callbacks before
      this one; add this callback last).

    A signal that arrives during validation is therefore handled when validation ends: choose the
    ``--signal`` lead time to cover one validation pass. A signal after the last epoch's end is not
    acted on (training is finishing anyway). Without a SLURM environment with ``auto_requeue``
    (or outside the main thread) the callback does nothing.
    """

    def __init__(self) -> None:
        self._signum: Optional[int] = None
        self._deferred: Optional[Callable[..., Any]] = None  # Lightning's handler, run at the safe point
        self._pending = False

    # -- handler installation -------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._pending = True  # nothing else: this runs between two arbitrary bytecodes of the loop

    def _install(self, trainer: L.Trainer) -> None:
        if self._deferred is not None or threading.current_thread() is not threading.main_thread():
            return
        env = getattr(trainer, "_accelerator_connector", None)
        env = getattr(env, "cluster_environment", None)
        if not (isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal is not None):
            return
        current = signal.getsignal(env.requeue_signal)
        if not callable(current):  # Lightning registered nothing (e.g. Windows)
            return
        self._signum, self._deferred, self._pending = env.requeue_signal, current, False
        signal.signal(env.requeue_signal, self._on_signal)

    def _uninstall(self) -> None:
        if self._deferred is not None and signal.getsignal(self._signum) == self._on_signal:
            signal.signal(self._signum, self._deferred)  # (Lightning's teardown then restores the original)
        self._deferred, self._pending = None, False

    # Lightning registers its handler after ``setup``/``on_fit_start`` and before the sanity check.
    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Stays installed until teardown: a signal from here on does not requeue a finished training.
        if self._deferred is not None and self._pending and trainer.is_global_zero:
            log.info("Requeue signal received after the last safe point: training is finishing, "
                     "not requeueing")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._uninstall()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._uninstall()

    # -- safe points ----------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._deferred is None or not batch_end_is_safe(trainer, batch_idx):
            return
        self._maybe_requeue(trainer, f"end of batch {batch_idx} (epoch {trainer.current_epoch})")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._deferred is None:
            return
        self._maybe_requeue(trainer, f"end of epoch {trainer.current_epoch}")

    def _maybe_requeue(self, trainer: L.Trainer, where: str) -> None:
        # A collective on every rank at the same batches: the signal may reach the ranks at different times.
        if not trainer.strategy.reduce_boolean_decision(self._pending, all=False):
            return
        self._pending = False
        if trainer.is_global_zero:
            log.info(f"Requeue signal: checkpointing and requeueing at the {where}, "
                     f"global step {trainer.global_step}")
        self._deferred(self._signum, None)


def batch_end_is_safe(trainer: L.Trainer, batch_idx: int) -> bool:
    """True when the optimizer stepped on this batch and neither validation nor the epoch end follows
    it (the same answer on every rank)."""
    if (batch_idx + 1) % max(int(trainer.accumulate_grad_batches), 1) != 0:
        return False  # gradients accumulated but not applied: they are not in a checkpoint
    num_batches = trainer.num_training_batches
    if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch or \
            (math.isfinite(num_batches) and batch_idx + 1 >= num_batches):
        return False  # the epoch end (with its validation) is next: on_train_epoch_end handles it
    every = trainer.val_check_batch
    if trainer.enable_validation and isinstance(every, (int, float)) and math.isfinite(every) and every >= 1:
        if (batch_idx + 1) % int(every) == 0:
            return False  # a mid-epoch validation follows this batch
    return True
