"""A few validation images with the predicted poses drawn, sent to the logger (W&B); optionally the
sampling points of the adaptive convolutions at the person centres of the same images."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from dekr.visualize import draw_poses

log = logging.getLogger(__name__)

#: Person centres drawn per ``val/offset_sampling`` image, best first (``val/poses`` draws 20 poses).
OFFSET_SAMPLING_MAX_CENTERS = 20
#: Grey of the border that brings the images of one logged list to one size (RGB, 0-255).
PAD_VALUE = 128


def pad_to_common_size(images: Sequence[np.ndarray], value: int = PAD_VALUE) -> list[np.ndarray]:
    """The images, each padded at the bottom and right to the largest height and width among them.

    Validation images keep their own sizes; W&B shows a list of images as one grid at one scale
    (and warns "Images sizes do not match" otherwise), so one logged list gets one size, every
    image at its own pixel scale in the top-left corner.

    Args:
        images: (H_i, W_i, 3) uint8 RGB.
        value: the border's grey level.

    Returns:
        (max H_i, max W_i, 3) uint8 images, in the same order.
    """
    if not images:
        return []
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    padded = []
    for image in images:
        canvas = np.full((height, width, image.shape[2]), value, dtype=image.dtype)
        canvas[:image.shape[0], :image.shape[1]] = image
        padded.append(canvas)
    return padded


class PoseImageLogger(Callback):
    """Logs the first ``num_images`` validation images of every ``every_n_epochs``-th validation,
    with their predicted poses, as ``val/poses`` (loggers with ``log_image``, e.g. W&B), padded to
    one size (:func:`pad_to_common_size`).

    With ``offset_sampling`` (``--pose_images.offset_sampling true``) the same images are also logged
    as ``val/offset_sampling``: the 9 taps of every adaptive conv of every keypoint branch at the
    person centres (:func:`dekr.inference.offset_sampling.image_offset_sampling`, one extra forward
    pass per image on rank zero, with the module's decoding options). A network without adaptive
    convs (``offset_block: basic``) logs a warning once and no such images.
    """

    def __init__(self, num_images: int = 4, every_n_epochs: int = 1, min_score: float = 0.1,
                 offset_sampling: bool = False) -> None:
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self.min_score = min_score
        self.offset_sampling = offset_sampling
        self._images: list[np.ndarray] = []
        self._captions: list[str] = []
        self._offset_images: list[np.ndarray] = []
        self._offset_captions: list[str] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._images, self._captions = [], []
        self._offset_images, self._offset_captions = [], []

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
            if self.offset_sampling:
                self._add_offset_sampling(pl_module, np.asarray(image), pred["image_id"])

    def _add_offset_sampling(self, pl_module: L.LightningModule, image: np.ndarray, image_id: Any) -> None:
        from dekr.inference.offset_sampling import NoAdaptiveConvError, image_offset_sampling
        from dekr.visualize import draw_sampling_points, keypoint_colors

        spec = pl_module.spec
        net = pl_module.net
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                sampling = image_offset_sampling(net, image, spec, pl_module.decode_config(),
                                                 max_centers=OFFSET_SAMPLING_MAX_CENTERS)
        except NoAdaptiveConvError as err:
            log.warning("pose_images.offset_sampling is on, but %s; no val/offset_sampling images", err)
            self.offset_sampling = False
            return
        finally:
            net.train(was_training)
        branches = sampling.points.shape[1]
        colors = keypoint_colors(spec.num_keypoints, spec.flip_pairs) if branches == spec.num_keypoints else None
        self._offset_images.append(draw_sampling_points(image, sampling.centers, sampling.points, colors))
        self._offset_captions.append(f"image {image_id}: {len(sampling)} centres, "
                                     f"{sampling.points.shape[2]} adaptive convs")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._images or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="val/poses", images=pad_to_common_size(self._images),
                                 caption=self._captions, step=trainer.global_step)
                if self._offset_images:
                    logger.log_image(key="val/offset_sampling",
                                     images=pad_to_common_size(self._offset_images),
                                     caption=self._offset_captions, step=trainer.global_step)
