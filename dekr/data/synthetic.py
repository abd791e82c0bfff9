"""Deterministic synthetic multi-figure keypoint data in COCO format, for any keypoint spec.

Each image holds a few figures of the spec's skeleton (:mod:`dekr.data.synthetic_figures`: stick
people for human specs such as COCO's and CrowdPose's, an articulated figure laid out from the
skeleton graph for any other) at varied scales and poses on a textured background, overlapping
one another, with exact COCO-format annotations: keypoints with v = 2 (visible), v = 1 (occluded
by a later figure or by an occluder bar) or v = 0 (outside the image, written as 0, 0), the
visible area, its box and a box polygon as segmentation, under the spec's first category id. A
figure's left side (the first keypoint of each flip pair) is drawn in warm colours and its right
side in cool colours, so left/right is learnable even for figures seen from the back (a quarter
of them).

Train on it with ``flip_prob: 0``: a horizontal flip swaps the labels but not the colours, so a
flipped sample says "warm = right" and the colour cue becomes contradictory; a model trained with
flips confuses left and right on the people seen from the back (seen: limb errors of 20-50 px on
exactly those validation people, while swapping their labels brings them to 8-20 px).

Everything is a pure function of ``(spec, seed, split, index)``: annotations are computed in memory
(rendering only the figure masks) and an image is re-rendered on demand, so the dataset needs no
files (``SyntheticKeypoints.coco`` + ``SyntheticKeypoints.render``). ``write_synthetic_coco``
writes the same data as a COCO-layout folder (json + PNG images) for tools that want files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dekr.data.spec import KeypointSpec, load_spec
from dekr.data.synthetic_figures import Figure, body_plan

#: The code of each split in the seeds of its random streams, ``(seed, code, index, stream)``. The
#: crowd scenes (:mod:`dekr.data.synthetic_crowd`) have a code of their own, so that no seed and index
#: make one of them a training or validation image. Any other split name has code 9.
SPLIT_CODES = {"train": 1, "val": 2, "test": 3, "crowd": 4}


def scene_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """The random stream ``stream`` of sample ``index`` of ``split`` under ``seed`` (0: the scene's
    layout, 1: its pixels)."""
    return np.random.default_rng([seed, SPLIT_CODES.get(split, 9), index, stream])


@dataclass
class SyntheticConfig:
    """Size and content of the synthetic dataset.

    Attributes:
        num_train, num_val: number of images per split.
        image_size: mean image side in pixels (each image's sides vary by +-20%).
        min_people, max_people: figures per image.
        min_height, max_height: figure size as a fraction of the image height (a person's height;
            another skeleton's keypoint extent along the longer side of their box).
        occluder_prob: chance of a random occluding bar per image.
        seed: base seed; the data are a pure function of (seed, split, index).
        cache_dir: if set, the datamodule writes the data once as a COCO folder there and reads files.
    """

    num_train: int = 512
    num_val: int = 64
    image_size: int = 256
    min_people: int = 1
    max_people: int = 4
    min_height: float = 0.35
    max_height: float = 0.9
    occluder_prob: float = 0.3
    seed: int = 0
    cache_dir: str | None = None


def _spec_or_coco(spec: KeypointSpec | None) -> KeypointSpec:
    """The spec to draw: COCO's unless one is given (the datamodule's default for synthetic data too)."""
    return load_spec("coco") if spec is None else spec


def _sample_scene(seed: int, split: str, index: int, cfg: SyntheticConfig, spec: KeypointSpec
                  ) -> tuple[int, int, list[Figure], tuple[int, int, int, int] | None]:
    """Image width, height (pixels), its figures (back to front) and the occluder box (x0, y0, x1, y1) or None."""
    rng = scene_rng(seed, split, index, 0)
    w = int(round(cfg.image_size * rng.uniform(0.8, 1.2)))
    h = int(round(cfg.image_size * rng.uniform(0.8, 1.2)))
    n = int(rng.integers(cfg.min_people, cfg.max_people + 1))
    plan = body_plan(spec)
    figures = [plan.sample(rng, w, h, (cfg.min_height, cfg.max_height)) for _ in range(n)]
    occluder = None
    if rng.random() < cfg.occluder_prob:
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.uniform(0.1, 0.4) * w, y0 + rng.uniform(0.05, 0.15) * h
        occluder = (int(x0), int(y0), int(x1), int(y1))
    return w, h, figures, occluder


def background(rng: np.random.Generator, w: int, h: int, panels: int = 1,
               texture_px: int = 3) -> np.ndarray:
    """A (h, w, 3) RGB uint8 textured background: smooth colour blobs, blocky noise and 2-6 clutter
    shapes per panel.

    ``panels`` side-by-side panels of a wide image each get the blobs and clutter of one training
    image (4 x 4 blobs, shapes up to a third of a panel); ``texture_px`` is the noise block's side in
    pixels (3 at the training images' size).
    """
    small = rng.uniform(40, 200, size=(4, 4 * panels, 3)).astype(np.float32)
    bg = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    noise_size = (h // texture_px + 1, w // texture_px + 1, 3)
    noise = cv2.resize(rng.normal(0, 20, size=noise_size).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_NEAREST)  # blocky texture, cheap to make
    bg = np.clip(bg + noise, 0, 255).astype(np.uint8)
    pw = w // panels
    shapes = sum(int(rng.integers(2, 7)) for _ in range(panels))
    for _ in range(shapes):  # clutter: rectangles and circles
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            x1, y1 = x0 + int(rng.integers(5, pw // 3)), y0 + int(rng.integers(5, h // 3))
            cv2.rectangle(bg, (x0, y0), (x1, y1), color, -1)
        else:
            cv2.circle(bg, (x0, y0), int(rng.integers(3, max(4, min(pw, h) // 6))), color, -1)
    return bg


def render_scene(seed: int, split: str, index: int, cfg: SyntheticConfig,
                 spec: KeypointSpec | None = None) -> np.ndarray:
    """The (H, W, 3) RGB uint8 image of one synthetic sample of ``spec`` (default: COCO's)."""
    spec = _spec_or_coco(spec)
    w, h, figures, occluder = _sample_scene(seed, split, index, cfg, spec)
    rng = scene_rng(seed, split, index, 1)
    image = background(rng, w, h)
    plan = body_plan(spec)
    for figure in figures:
        plan.draw(image, figure, plan.colors(figure, rng))
    if occluder is not None:
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.rectangle(image, occluder[:2], occluder[2:], color, -1)
    return image


def annotate_scene(seed: int, split: str, index: int, cfg: SyntheticConfig, image_id: int,
                   first_ann_id: int, spec: KeypointSpec | None = None
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO ``images`` entry and ``annotations`` of one sample of ``spec`` (default: COCO's; figure
    masks rendered, no pixels)."""
    spec = _spec_or_coco(spec)
    w, h, figures, occluder = _sample_scene(seed, split, index, cfg, spec)
    anns = annotate_figures(figures, occluder, w, h, spec, image_id, first_ann_id)
    info = {"id": image_id, "file_name": f"{split}/{index:06d}.png", "width": w, "height": h,
            "synthetic": {"seed": seed, "split": split, "index": index}}
    return info, anns


def annotate_figures(figures: list[Figure], occluder: tuple[int, int, int, int] | None, w: int, h: int,
                     spec: KeypointSpec, image_id: int, first_ann_id: int) -> list[dict[str, Any]]:
    """COCO ``annotations`` of ``spec``'s figures drawn back to front in a ``w`` x ``h`` image, under an
    optional occluder box (x0, y0, x1, y1): a keypoint covered by a later figure or the occluder has
    v = 1, one outside the image v = 0; a figure wholly hidden or outside gets no annotation."""
    plan = body_plan(spec)
    masks = []
    for figure in figures:
        m = np.zeros((h, w), dtype=np.uint8)
        plan.draw(m, figure, None)
        masks.append(m.astype(bool))
    occ = np.zeros((h, w), dtype=bool)
    if occluder is not None:
        cv2.rectangle(occ.view(np.uint8), occluder[:2], occluder[2:], 1, -1)
    anns = []
    for i, figure in enumerate(figures):
        covered = occ.copy()
        for later in masks[i + 1:]:
            covered |= later
        visible = masks[i] & ~covered
        kpts = []
        for x, y in figure["keypoints"]:
            xi, yi = int(round(x)), int(round(y))
            if not (0 <= x < w and 0 <= y < h):
                kpts += [0, 0, 0]
            else:
                v = 1 if covered[min(yi, h - 1), min(xi, w - 1)] else 2
                kpts += [round(float(x), 2), round(float(y), 2), v]
        area = int(visible.sum())
        num = sum(1 for v in kpts[2::3] if v > 0)
        if area == 0 or num == 0:
            continue  # fully hidden or outside: not a labelled figure
        ys, xs = np.nonzero(visible)
        x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
        anns.append({"id": first_ann_id + len(anns), "image_id": image_id, "category_id": spec.category_ids[0],
                     "iscrowd": 0,
                     "keypoints": kpts, "num_keypoints": num, "area": float(area),
                     "bbox": [x0, y0, x1 - x0, y1 - y0],
                     "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
    return anns


def synthetic_coco(split: str, cfg: SyntheticConfig, spec: KeypointSpec | None = None) -> dict[str, Any]:
    """COCO-format dict (images, annotations, categories) of one split of ``spec``'s figures (default: COCO's)."""
    spec = _spec_or_coco(spec)
    num = cfg.num_train if split == "train" else cfg.num_val
    images, annotations = [], []
    base = SPLIT_CODES.get(split, 9) * 1_000_000
    name = "person" if body_plan(spec).kind == "person" else spec.name
    for index in range(num):
        info, anns = annotate_scene(cfg.seed, split, index, cfg, image_id=base + index,
                                    first_ann_id=base * 10 + len(annotations) + 1, spec=spec)
        images.append(info)
        annotations.extend(anns)
    return {"info": {"description": f"DEKR synthetic keypoints, split {split}, seed {cfg.seed}"},
            "images": images, "annotations": annotations,
            "categories": [{"id": spec.category_ids[0], "name": name, "supercategory": name,
                            "keypoints": list(spec.keypoint_names),
                            "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton]}]}


class SyntheticKeypoints:
    """One split of synthetic data of ``spec`` (default: COCO's): ``coco`` (the ground truth dict)
    and ``render(image_info)``."""

    def __init__(self, split: str, cfg: SyntheticConfig, spec: KeypointSpec | None = None) -> None:
        self.split = split
        self.cfg = cfg
        self.spec = _spec_or_coco(spec)
        self.coco = synthetic_coco(split, cfg, self.spec)

    def render(self, image_info: dict[str, Any]) -> np.ndarray:
        meta = image_info["synthetic"]
        return render_scene(meta["seed"], meta["split"], meta["index"], self.cfg, self.spec)


def write_synthetic_coco(out_dir: str | Path, cfg: SyntheticConfig, splits=("train", "val"),
                         spec: KeypointSpec | None = None) -> Path:
    """Write ``annotations/person_keypoints_{split}.json`` and ``images/{split}/*.png`` under out_dir.

    Idempotent: a split whose json exists with the same config and skeleton is not rewritten.
    """
    out = Path(out_dir)
    spec = _spec_or_coco(spec)
    for split in splits:
        ann_path = out / "annotations" / f"person_keypoints_{split}.json"
        signature = {**{k: v for k, v in vars(cfg).items() if k != "cache_dir"}, "spec": spec.name,
                     "keypoint_names": list(spec.keypoint_names), "flip_pairs": [list(p) for p in spec.flip_pairs],
                     "skeleton": [list(p) for p in spec.skeleton], "category_id": spec.category_ids[0]}
        if ann_path.is_file():
            try:
                with open(ann_path) as f:
                    if json.load(f).get("info", {}).get("config") == signature:
                        continue
            except (OSError, json.JSONDecodeError):
                pass
        data = SyntheticKeypoints(split, cfg, spec)
        (out / "images").mkdir(parents=True, exist_ok=True)
        for info in data.coco["images"]:
            path = out / "images" / info["file_name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(data.render(info), cv2.COLOR_RGB2BGR))
        data.coco["info"]["config"] = signature
        ann_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = ann_path.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(data.coco, f)
        tmp.replace(ann_path)
    return out
