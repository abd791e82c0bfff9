"""PoseImageLogger: the validation images of unequal sizes logged at one size; with ``offset_sampling``,
the sampling points of the adaptive convs logged as ``val/offset_sampling`` beside ``val/poses`` (a
recording logger, and a real offline W&B run, which W&B takes without a size warning); a network
without adaptive convs warns once and logs the poses only."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from dekr.callbacks import PoseImageLogger
from dekr.callbacks.pose_images import PAD_VALUE, pad_to_common_size
from dekr.data.datamodule import DEKRDataModule
from dekr.data.synthetic import SyntheticConfig
from dekr.models.dekr import DEKRNetConfig
from dekr.module import DEKRModule


class ImageRecorder(CSVLogger):
    """A logger with ``log_image`` (as W&B has) that keeps what it is given."""

    def __init__(self, save_dir: Path) -> None:
        super().__init__(save_dir)
        self.images: dict[str, list[Any]] = {}

    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        self.images[key] = list(images)


def small_module(offset_block: str = "adaptive") -> DEKRModule:
    # PyTorch's init: random centre heatmaps give centres, random offset convs spread the taps.
    torch.manual_seed(0)
    return DEKRModule(net=DEKRNetConfig(backbone="hrnet_w18_small", heatmap_channels=8, offset_channels_per_keypoint=4,
                                        offset_blocks=2, offset_block=offset_block, init="pytorch"),
                      decode={"flip_test": False})


def validate(module: DEKRModule, callback: PoseImageLogger, logger: Any, root: Path) -> DEKRDataModule:
    data = DEKRDataModule(dataset="synthetic", input_size=64, batch_size=2, val_batch_size=2, num_workers=0,
                          pin_memory=False, persistent_workers=False,
                          synthetic=SyntheticConfig(num_train=2, num_val=2, image_size=96))
    trainer = L.Trainer(default_root_dir=root, accelerator="cpu", devices=1, logger=logger, callbacks=[callback],
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.validate(module, datamodule=data)
    return data


def test_pad_to_common_size_keeps_each_image_in_the_top_left_corner() -> None:
    rng = np.random.default_rng(0)
    tall, wide = rng.integers(0, 256, (5, 3, 3), dtype=np.uint8), rng.integers(0, 256, (2, 4, 3), dtype=np.uint8)
    padded = pad_to_common_size([tall, wide])
    assert [p.shape for p in padded] == [(5, 4, 3), (5, 4, 3)] and all(p.dtype == np.uint8 for p in padded)
    assert np.array_equal(padded[0][:5, :3], tall) and np.all(padded[0][:, 3:] == PAD_VALUE)
    assert np.array_equal(padded[1][:2, :4], wide) and np.all(padded[1][2:] == PAD_VALUE)
    assert pad_to_common_size([]) == []


def test_validation_images_of_unequal_sizes_are_logged_at_one_size(tmp_path: Path) -> None:
    logger = ImageRecorder(tmp_path)
    data = validate(small_module(), PoseImageLogger(num_images=2), logger, tmp_path)
    sizes = {tuple(data.val_dataloader().dataset[i]["image"].shape) for i in range(2)}
    assert len(sizes) == 2  # the synthetic images have their own sizes
    logged = {image.shape for image in logger.images["val/poses"]}
    assert logged == {(max(h for h, _, _ in sizes), max(w for _, w, _ in sizes), 3)}


def test_offset_sampling_images_beside_the_pose_images(tmp_path: Path) -> None:
    logger = ImageRecorder(tmp_path)
    validate(small_module(), PoseImageLogger(num_images=2, offset_sampling=True), logger, tmp_path)
    poses, offsets = logger.images["val/poses"], logger.images["val/offset_sampling"]
    assert len(poses) == len(offsets) == 2
    for drawn, points in zip(poses, offsets):
        assert points.shape == drawn.shape and points.dtype == np.uint8
        assert np.any(points != drawn)  # seed 0: 17 centres in the first image

    plain = ImageRecorder(tmp_path / "plain")
    validate(small_module(), PoseImageLogger(num_images=2), plain, tmp_path)  # the default: off
    assert set(plain.images) == {"val/poses"}


def test_a_basic_block_network_warns_and_logs_the_poses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    logger = ImageRecorder(tmp_path)
    callback = PoseImageLogger(num_images=2, offset_sampling=True)
    with caplog.at_level(logging.WARNING, logger="dekr.callbacks.pose_images"):
        validate(small_module("basic"), callback, logger, tmp_path)
    assert set(logger.images) == {"val/poses"} and len(logger.images["val/poses"]) == 2
    warnings = [r.getMessage() for r in caplog.records if "offset_sampling" in r.getMessage()]
    assert len(warnings) == 1 and "its offset blocks: BasicBlock" in warnings[0]


@pytest.mark.slow
def test_offline_wandb_run_holds_the_offset_sampling_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from dekr.loggers import WandbLogger
    from tests.scripts.wandb_reader import history

    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(save_dir=str(tmp_path), name="offsets")
    try:
        with caplog.at_level(logging.WARNING):
            validate(small_module(), PoseImageLogger(num_images=2, offset_sampling=True), logger, tmp_path)
    finally:
        logger.experiment.finish()
    # W&B's warning (on the root logger) for a list of images of unequal sizes
    assert not [r for r in caplog.records if "sizes do not match" in r.getMessage()]
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    # The W&B service may still be writing the run file when finish() returns: read until it holds the rows.
    deadline = time.monotonic() + 60
    while True:
        rows = history(run_file)  # an image list is logged as nested keys: val/offset_sampling/count, ...
        offsets = [row for row in rows if "val/offset_sampling/count" in row]
        if offsets or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(offsets) == 1 and offsets[0]["val/offset_sampling/count"] == 2
    assert offsets[0]["val/offset_sampling/captions"][0].endswith("2 adaptive convs")
    assert any(row.get("val/poses/count") == 2 for row in rows)
    pngs = list((tmp_path / "wandb").glob("offline-run-*/files/media/images/val/offset_sampling_*.png"))
    assert len(pngs) == 2
