"""DEKR (Disentangled Keypoint Regression) bottom-up pose estimation on PyTorch Lightning.

The flat API, imported lazily (``import dekr`` loads neither torch nor Lightning):

    model = dekr.load("checkpoint.ckpt")        # any checkpoint kind or a zoo name -> Predictor
    result = model("photo.jpg")[0]              # PoseResult: keypoints (P, K, 3), scores (P,)
    result.save("poses.jpg")

``dekr.evaluate(model, data=...)`` (OKS-AP), and ``dekr.DEKRNet``, ``dekr.DEKRModule``, ``dekr.DEKRDataModule``, ``dekr.DecodeConfig``,
``dekr.load_spec``, ``dekr.OKSAP``, ``dekr.draw_poses``, ``dekr.load_checkpoint``.
"""
from __future__ import annotations

import importlib
from typing import Any

from dekr.cpu_threads import prefer_passive_waiting as _prefer_passive_waiting

__version__ = "0.1.0"

# OpenMP's passive waiting (dekr.cpu_threads), set here because libgomp reads it once, when torch loads,
# and dekr loads torch lazily after this: only a default, never over the user's OMP_* variables.
_prefer_passive_waiting()

# attribute -> module defining it; imported on first use, so that `import dekr` stays cheap.
_LAZY = {
    "load": "dekr.inference.predictor",
    "Predictor": "dekr.inference.predictor",
    "PoseResult": "dekr.inference.result",
    "DEKRNet": "dekr.models.dekr",
    "DEKRModule": "dekr.module",
    "DEKRDataModule": "dekr.data.datamodule",
    "DecodeConfig": "dekr.inference.config",
    "load_spec": "dekr.data.spec",
    "OKSAP": "dekr.metrics.oks_ap",
    "draw_poses": "dekr.visualize",
    "load_checkpoint": "dekr.checkpoint",
    "evaluate": "dekr.evaluation",
}
__all__ = [
    "OKSAP",
    "DEKRDataModule",
    "DEKRModule",
    "DEKRNet",
    "DecodeConfig",
    "PoseResult",
    "Predictor",
    "__version__",
    "draw_poses",
    "evaluate",
    "load",
    "load_checkpoint",
    "load_spec",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dekr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
