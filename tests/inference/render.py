"""A fake DEKR network for tests: heatmaps and offsets rendered from ground-truth annotations.

Test images are synthetic with the real images' sizes: channel 0 holds an image code (so the fake
net knows which annotations to render), channel 1 is dark on the left half and bright on the right
(so it can tell a flipped input). From the input tensor it recovers the image, the test scale and
the flip, maps the annotated keypoints into that input (the official resize, the flip and its
shift) and renders, at output resolution, Gaussian keypoint/center heatmaps and offsets
"pixel - keypoint" around each person's center: a perfect network.
"""
from __future__ import annotations

import numpy as np
import torch

from dekr.data.spec import KeypointSpec
from dekr.inference.config import DecodeConfig
from dekr.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from dekr.inference.preprocess import resize_info


def synthetic_images(gt: dict) -> tuple[list[np.ndarray], list[int]]:
    images, ids = [], []
    for i, img in enumerate(gt["images"]):
        arr = np.zeros((img["height"], img["width"], 3), dtype=np.uint8)
        arr[..., 0] = 10 + 7 * i
        arr[:, : img["width"] // 2, 1] = 50
        arr[:, img["width"] // 2:, 1] = 150
        arr[..., 2] = 255
        images.append(arr)
        ids.append(img["id"])
    return images, ids


def _gaussian(h: int, w: int, x: float, y: float, sigma: float) -> np.ndarray:
    xs = np.arange(w)[None, :]
    ys = np.arange(h)[:, None]
    return np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))


class GroundTruthNet:
    """Callable (N, 3, H, W) normalised -> (heatmaps, offsets) rendered from the annotations."""

    def __init__(self, gt: dict, spec: KeypointSpec, cfg: DecodeConfig, device: str = "cpu") -> None:
        self.spec, self.cfg, self.device = spec, cfg, torch.device(device)
        self.images = gt["images"]
        self.persons: dict[int, list[np.ndarray]] = {img["id"]: [] for img in gt["images"]}
        for ann in gt["annotations"]:
            kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            if ann.get("iscrowd", 0) or (kp[:, 2] > 0).sum() == 0:
                continue
            self.persons[ann["image_id"]].append(kp)
        self.calls = 0

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        pixels = ((batch.float().cpu() * std + mean) * 255).round().numpy()
        heatmaps, offsets = zip(*[self._render(p) for p in pixels])
        return torch.stack(heatmaps).to(self.device), torch.stack(offsets).to(self.device)

    def _render(self, pixels: np.ndarray):
        k, stride = self.spec.num_keypoints, self.cfg.output_stride
        _, height, width = pixels.shape
        h, w = height // stride, width // stride
        code = pixels[0].max()
        index = int(round((code - 10) / 7))
        img = self.images[index]
        info = resize_info(img["height"], img["width"], self.cfg.input_size)
        rows = np.flatnonzero((pixels[0] > code / 2).any(axis=1))
        cols = np.flatnonzero(pixels[0, rows[len(rows) // 2]] > code / 2)
        content_h = rows[-1] - rows[0] + 1
        scale = min(self.cfg.scales, key=lambda s: abs(content_h - s * info.factor * img["height"]))
        third = max(1, len(cols) // 3)
        row = pixels[1, rows[len(rows) // 2]]
        flipped = row[cols[:third]].mean() > row[cols[-third:]].mean()
        matrix = info.matrix(scale)
        heat = np.zeros((k + 1, h, w))
        off = np.zeros((2 * k, h, w))
        owner_area = np.full((h, w), np.inf)
        persons = []
        for kp in self.persons[img["id"]]:
            xy = kp[:, :2] @ matrix[:, :2].T + matrix[:, 2]
            if flipped:
                xy[:, 0] = width - 1 - xy[:, 0] - self.cfg.flip_shift
                xy = xy[self.spec.flip_index]
                vis = kp[self.spec.flip_index, 2] > 0
            else:
                vis = kp[:, 2] > 0
            xy = xy / stride
            center = xy[vis].mean(axis=0)
            xy[~vis] = center
            extent = xy[vis].max(0) - xy[vis].min(0)
            persons.append((xy, vis, center, float((extent ** 2).sum())))
        for xy, vis, center, area in sorted(persons, key=lambda p: -p[3]):
            for j in np.flatnonzero(vis):
                heat[j] = np.maximum(heat[j], _gaussian(h, w, xy[j, 0], xy[j, 1], 2.0))
            heat[k] = np.maximum(heat[k], _gaussian(h, w, center[0], center[1], 4.0))
            cx, cy = int(round(center[0])), int(round(center[1]))
            x0, x1 = max(cx - 4, 0), min(cx + 5, w)
            y0, y1 = max(cy - 4, 0), min(cy + 5, h)
            if x0 >= x1 or y0 >= y1:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1]
            win = owner_area[y0:y1, x0:x1] >= area
            for j in range(k):
                off[2 * j, y0:y1, x0:x1][win] = (xs - xy[j, 0])[win]
                off[2 * j + 1, y0:y1, x0:x1][win] = (ys - xy[j, 1])[win]
            owner_area[y0:y1, x0:x1][win] = area
        return torch.from_numpy(heat).float(), torch.from_numpy(off).float()
