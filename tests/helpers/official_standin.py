"""Deterministic stand-ins for the official DEKR checkpoints (no download possible here).

Reproduces ``shared/reference/official_weights.py`` exactly (the reference outputs in
``tests/fixtures/reference/forward_*.npz`` were computed by the official code from checkpoints
made by that script): tensor number i (file order) is drawn from PCG64 seeded with (seed, i).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

REFERENCE_DIR = Path(__file__).parents[1] / "fixtures" / "reference"
REGULAR = [[-1, -1, -1, 0, 0, 0, 1, 1, 1], [-1, 0, 1, -1, 0, 1, -1, 0, 1]]


def read_keys(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    keys = []
    for line in open(path):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        name, _, shape = line.partition("\t")
        keys.append((name, tuple(int(d) for d in shape.split("x")) if shape else ()))
    return keys


def make_state_dict(keys: list[tuple[str, tuple[int, ...]]], seed: int = 0) -> dict[str, torch.Tensor]:
    out = {}
    for i, (name, shape) in enumerate(keys):
        rng = np.random.default_rng([seed, i])
        if name.endswith("num_batches_tracked"):
            t = torch.zeros((), dtype=torch.long)
        elif name.endswith("regular_matrix"):
            t = torch.tensor(REGULAR, dtype=torch.float32)
        elif name.endswith("running_var"):
            t = torch.from_numpy(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        elif name.endswith("running_mean"):
            t = torch.from_numpy((rng.standard_normal(shape) * 0.1).astype(np.float32))
        elif name.endswith(".bias"):
            t = torch.from_numpy((rng.standard_normal(shape) * 0.05).astype(np.float32))
        elif name.endswith(".weight") and len(shape) == 1:
            t = torch.from_numpy(rng.uniform(0.2, 0.6, shape).astype(np.float32))
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            t = torch.from_numpy((rng.standard_normal(shape) * math.sqrt(1.0 / fan_in)).astype(np.float32))
        out[name] = t
    return out


def standin_state_dict(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    return make_state_dict(read_keys(REFERENCE_DIR / f"keys_{variant}.txt"), seed)


def write_standin_checkpoint(variant: str, path: Path, seed: int = 0) -> Path:
    torch.save(standin_state_dict(variant, seed), path)
    return path


#: MMPose's fixed ``AdaptiveActivationBlock.regular_matrix``: the grid's dy and dx rows plus ones.
MMPOSE_REGULAR = REGULAR + [[1] * 9]


def mmpose_standin_state_dict(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The stand-in behind ``forward_mmpose_dekr_<variant>_*.npz``: :func:`make_state_dict` on
    ``keys_mmpose_dekr_<variant>.txt``, with MMPose's 3x9 ``regular_matrix`` (shared/reference/README.md)."""
    state = make_state_dict(read_keys(REFERENCE_DIR / f"keys_mmpose_dekr_{variant}.txt"), seed)
    for name in state:
        if name.endswith("regular_matrix"):
            state[name] = torch.tensor(MMPOSE_REGULAR, dtype=torch.float32)
    return state
