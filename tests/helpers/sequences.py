"""Pose sequences built by moving the persons of a real COCO image (tracking and smoothing tests)."""
from __future__ import annotations

import copy
import json

import numpy as np

from tests.helpers.paths import FIXTURES

COCO_GT = FIXTURES / "coco" / "test_coco.json"


def real_persons(image_id: int = 197388) -> tuple[dict, list[np.ndarray]]:
    """One real COCO image (its record) and its annotated persons' keypoints (K, 3)."""
    gt = json.loads(COCO_GT.read_text())
    image = next(im for im in gt["images"] if im["id"] == image_id)
    persons = [
        np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        for a in gt["annotations"]
        if a["image_id"] == image_id and a["num_keypoints"] > 0 and not a.get("iscrowd", 0)
    ]
    return image, persons


def shifted_sequence(
    num_frames: int, step=(6.0, 2.0), shake: float = 0.0, seed: int = 0, image_id: int = 197388
) -> tuple[dict, list[np.ndarray], np.ndarray]:
    """A COCO-style ground truth of ``num_frames`` frames: the real image's persons moved by a
    steady camera pan ``step`` (pixels per frame) plus Gaussian shake of ``shake`` pixels.

    Returns (gt dict with one image per frame, per-frame poses (P, K, 3) in frame order,
    per-frame total shift (T, 2))."""
    rng = np.random.default_rng(seed)
    image, persons = real_persons(image_id)
    shifts = np.arange(num_frames)[:, None] * np.asarray(step)[None] + rng.normal(0, shake, (num_frames, 2))
    gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    frames = []
    for t, (dx, dy) in enumerate(shifts):
        record = dict(copy.deepcopy(image), id=t + 1, file_name=f"{t:06d}.jpg")
        gt["images"].append(record)
        poses = []
        for p, kp in enumerate(persons):
            moved = kp.copy()
            moved[:, 0] += dx * (kp[:, 2] > 0)
            moved[:, 1] += dy * (kp[:, 2] > 0)
            poses.append(moved)
            gt["annotations"].append(
                {
                    "id": 1000 * t + p + 1,
                    "image_id": t + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "keypoints": moved.ravel().tolist(),
                    "num_keypoints": int((kp[:, 2] > 0).sum()),
                    "area": 1000.0,
                    "bbox": [0, 0, 1, 1],
                }
            )
        frames.append(np.stack(poses))
    return gt, frames, shifts
