"""A tiny DEKRModule and a quiet CPU Lightning trainer for the tests."""
from __future__ import annotations

from pathlib import Path

import lightning as L

from dekr.callbacks import AtomicCheckpointIO
from dekr.models.dekr import DEKRNetConfig
from dekr.module import DEKRModule

TINY = dict(backbone="hrnet_w18_small", heatmap_channels=8, offset_channels_per_keypoint=4, offset_blocks=1)


def tiny_module(k: int = 17, spec: str = "coco", **kwargs) -> DEKRModule:
    return DEKRModule(net=DEKRNetConfig(num_keypoints=k, **TINY), spec=spec, **kwargs)


def trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    defaults = dict(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, plugins=[AtomicCheckpointIO()], num_sanity_val_steps=0)
    defaults.update(kwargs)
    return L.Trainer(**defaults)
