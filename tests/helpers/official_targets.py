"""Reader for ``tests/fixtures/reference/targets_official_*.npz``: the official code's targets and losses.

The files are verbatim copies of ``shared/reference/targets_official_*.npz``; this reader keeps the
parts of ``shared/reference/official_targets.py`` that the tests need (same field names, same seeded
prediction rebuild). Each file holds cases made from real annotations pushed through the official
training pipeline (HRNet/DEKR ``lib/dataset``, experiment augmentation), recorded where the
official code calls its target generators:

    cases, batches, meta = load(path)
    case["joints"]       (P, K+1, 3) float64, output-map coordinates, the centre last, v as the
                         official warp leaves it (never changed; a centre in (-1, 0) stays labelled)
    case["area"]         (P,) float64, the official offset-weight area (input pixels^2)
    case["mask"]         (R, R) uint8, the warped ignore mask (1 = use)
    case["output_size"]  R (96, 128 or 160)
    case["tag"]          aug | aug:centre_edge | edge:centre_neg | edge:snapped | edge:duplicate
    case["ref"]          float32, unrounded official outputs: heatmap (K+1, R, R), heatmap_weight
                         (K+1, R, R) (= mask x the generator's weight), offset (2K, R, R),
                         offset_weight (2K, R, R)
    batch["cases"]       indices of the cases (one output size) stacked into a batch
    batch["loss"]        (2, 2): official MultiLossFactory (heatmap loss, offset loss), factors
                         applied, for prediction sets 0 and 1
    batch["checksum"]    (2, 2): :func:`checksum` of the (heatmaps, offsets) of sets 0 and 1
    meta                 seed, num_keypoints, sigma, center_sigma, bg_weight, offset_radius,
                         loss_factors, official_commit, ...
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

ARRAYS = ("heatmap", "heatmap_weight", "offset", "offset_weight")
REFERENCE_DIR = Path(__file__).parents[1] / "fixtures" / "reference"
FILES = {"minicoco": "targets_official_minicoco_seed5201.npz",
         "crowdpose": "targets_official_crowdpose_val_seed5204.npz"}


def load(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(cases, batches, meta) of one file (fields in the module docstring)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        cases = []
        for i in range(meta["num_cases"]):
            info = json.loads(str(z[f"c{i}_info"]))
            cases.append(dict(info, joints=z[f"c{i}_joints"], area=z[f"c{i}_area"], mask=z[f"c{i}_mask"],
                              ref={k: z[f"c{i}_{k}"] for k in ARRAYS}))
        batches = [dict(cases=[int(c) for c in z[f"b{b}_cases"]], loss=z[f"b{b}_loss"],
                        checksum=z[f"b{b}_checksum"])
                   for b in range(meta["num_batches"])]
    return cases, batches, meta


def predictions(meta: dict[str, Any], batch: int, pred_set: int,
                targets: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The seeded predicted (heatmaps (B, K+1, R, R), offsets (B, 2K, R, R)), float32, of batch ``batch``.

    ``targets``: the batch's cases' ``ref`` arrays stacked over the batch. Set 0: near the targets
    (offsets in the smooth-L1 quadratic zone on weighted pixels); set 1: far (uniform heatmaps,
    offsets N(target, 2^2)).
    """
    rng = np.random.default_rng([meta["seed"], 1000 + batch, pred_set])
    hm, off, ow = targets["heatmap"], targets["offset"], targets["offset_weight"]
    if pred_set == 0:
        ph = hm + rng.normal(0.0, 0.05, hm.shape)
        po = off + np.where(ow > 0, rng.normal(0.0, 0.06, off.shape), rng.normal(0.0, 3.0, off.shape))
    else:
        ph = rng.uniform(-0.2, 1.2, hm.shape)
        po = off + rng.normal(0.0, 2.0, off.shape)
    return ph.astype(np.float32), po.astype(np.float32)


def checksum(a: np.ndarray) -> float:
    """Sum of absolute values in float64: proves :func:`predictions` rebuilt the stored arrays."""
    return float(np.abs(a.astype(np.float64)).sum())
