"""Atomic checkpoint writing: a failed save never truncates the previous file."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from dekr.checkpoint import atomic_torch_save


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("boom while pickling")


def test_failed_save_keeps_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"step": 2, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_saved_file_has_umask_permissions(tmp_path: Path) -> None:
    path = atomic_torch_save({"a": 1}, tmp_path / "x.ckpt")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
