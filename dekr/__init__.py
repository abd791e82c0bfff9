"""DEKR (Disentangled Keypoint Regression) bottom-up pose estimation on PyTorch Lightning."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["DEKRModule", "DEKRDataModule", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import dekr.models` does not pull in Lightning.
    if name == "DEKRModule":
        from dekr.module import DEKRModule

        return DEKRModule
    if name == "DEKRDataModule":
        from dekr.data.datamodule import DEKRDataModule

        return DEKRDataModule
    raise AttributeError(f"module 'dekr' has no attribute {name!r}")
