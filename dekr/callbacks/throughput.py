"""Training throughput in images per second (all ranks), on the progress bar and in the logger."""
from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class ImagesPerSecond(Callback):
    """Logs ``train/images_per_sec``: global images per second over the last ``window`` steps,
    measured from one optimiser step's end to the next (data loading included).

    Args:
        window: number of steps averaged.
        prog_bar: also show it on the progress bar.
    """

    def __init__(self, window: int = 10, prog_bar: bool = True) -> None:
        self.window = window
        self.prog_bar = prog_bar
        self._times: list[float] = []
        self._images: list[int] = []
        self._last: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None  # validation time between epochs is not training throughput

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last is not None:
            n = batch["image"].shape[0] if isinstance(batch, dict) else len(batch)
            self._times.append(now - self._last)
            self._images.append(n * trainer.world_size)
            self._times, self._images = self._times[-self.window:], self._images[-self.window:]
            rate = sum(self._images) / max(sum(self._times), 1e-9)
            pl_module.log("train/images_per_sec", rate, prog_bar=self.prog_bar, on_step=True, on_epoch=False,
                          batch_size=n)
        self._last = now
