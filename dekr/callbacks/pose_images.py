"""A few validation images with the predicted poses drawn, sent to the logger (W&B)."""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback


def draw_poses(image: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[tuple[int, int]],
               scores: np.ndarray | None = None, min_score: float = 0.1, max_poses: int = 20) -> np.ndarray:
    """Copy of an (H, W, 3) uint8 RGB ``image`` with poses drawn.

    ``keypoints``: (P, K, 3) as (x, y, score) in image pixels; poses sorted by ``scores``
    (P,) and the first ``max_poses`` drawn; keypoints scoring under ``min_score`` are skipped.
    """
    canvas = np.ascontiguousarray(image.copy())
    kpts = np.asarray(keypoints, dtype=np.float64).reshape(len(keypoints), -1, 3) if len(keypoints) else \
        np.zeros((0, 0, 3))
    order = np.argsort(-np.asarray(scores)) if scores is not None and len(kpts) else np.arange(len(kpts))
    thickness = max(1, round(max(canvas.shape[:2]) / 300))
    for rank, p in enumerate(order[:max_poses]):
        hue = int(179 * rank / max(1, min(len(kpts), max_poses)))
        color = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2RGB)[0, 0].tolist()
        pose = kpts[p]
        for a, b in skeleton:
            if pose[a, 2] >= min_score and pose[b, 2] >= min_score:
                cv2.line(canvas, (int(pose[a, 0]), int(pose[a, 1])), (int(pose[b, 0]), int(pose[b, 1])), color,
                         thickness, cv2.LINE_AA)
        for x, y, s in pose:
            if s >= min_score:
                cv2.circle(canvas, (int(x), int(y)), thickness + 1, color, -1, cv2.LINE_AA)
    return canvas


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
                                           np.asarray(pred["scores"]), self.min_score))
            self._captions.append(f"image {pred['image_id']}: {len(pred['scores'])} poses")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._images or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="val/poses", images=self._images, caption=self._captions,
                                 step=trainer.global_step)
