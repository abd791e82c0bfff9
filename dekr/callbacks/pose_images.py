"""A few validation images with the predicted poses drawn, sent to the logger (W&B)."""
from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback

from dekr.visualize import draw_poses


class PoseImageLogger(Callback):
    """Logs the first ``num_images`` validation images of every ``every_n_epochs``-th validation,
    with their predicted poses, as ``val/poses`` (loggers with ``log_image``, e.g. W&B)."""

    def __init__(self, num_images: int = 4, every_n_epochs: int = 1, min_score: float = 0.1) -> None:
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self.min_score = min_score
        self._images: list[np.ndarray] = []
        self._captions: list[str] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._images, self._captions = [], []

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if (not trainer.is_global_zero or trainer.sanity_checking or not outputs or self.num_images <= 0
                or len(self._images) >= self.num_images or trainer.current_epoch % self.every_n_epochs):
            return
        skeleton = getattr(pl_module, "spec", None).skeleton if hasattr(pl_module, "spec") else ()
        for image, pred in zip(batch["image"], outputs):
            if len(self._images) >= self.num_images:
                break
            self._images.append(draw_poses(np.asarray(image), np.asarray(pred["keypoints"]), skeleton,
                                           scores=np.asarray(pred["scores"]), min_score=self.min_score,
                                           color_by="person", show_ids=False, max_poses=20))
            self._captions.append(f"image {pred['image_id']}: {len(pred['scores'])} poses")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._images or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="val/poses", images=self._images, caption=self._captions,
                                 step=trainer.global_step)
