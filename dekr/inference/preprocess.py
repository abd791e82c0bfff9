"""Test-time resize: short side to the input size, long side aligned to 64 (official semantics).

The official ``get_multi_scale_size`` / ``resize_align_multi_scale`` warp the image with an
affine that maps the (rounded) image center to the center of the aligned canvas with one
uniform factor ``f = short side resized / short side``; the canvas is larger than the scaled image
along the long side (black borders). Predictions at scale 1 (input pixels of the base canvas)
map back to the original image with the inverse of that affine.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ResizeInfo:
    """How one image was resized at scale 1.

    Attributes:
        base_size: (width, height) of the aligned input canvas at scale 1.
        center: (cx, cy) of the original image, rounded as in the official code.
        factor: uniform scale factor original -> base canvas.
    """

    base_size: tuple[int, int]
    center: tuple[float, float]
    factor: float

    def size_at(self, scale: float) -> tuple[int, int]:
        """(width, height) of the canvas at a test scale (official rounding)."""
        w, h = self.base_size
        if scale == 1.0:
            return w, h
        return int(w * scale), int(h * scale)

    def matrix(self, scale: float = 1.0) -> np.ndarray:
        """2x3 affine original -> canvas at ``scale``."""
        w, h = self.size_at(scale)
        f = self.factor * w / self.base_size[0]
        cx, cy = self.center
        return np.array([[f, 0.0, w / 2.0 - f * cx], [0.0, f, h / 2.0 - f * cy]], dtype=np.float64)

    def to_original(self, xy: Tensor) -> Tensor:
        """(..., 2) base-canvas (scale 1) input-pixel coordinates -> original image coordinates."""
        w, h = self.base_size
        offset = xy.new_tensor([w / 2.0, h / 2.0])
        center = xy.new_tensor(self.center)
        return (xy - offset) / self.factor + center


def resize_info(height: int, width: int, input_size: int) -> ResizeInfo:
    """Official ``get_multi_scale_size(image, input_size, 1.0, 1.0)``."""
    center = (float(int(width / 2.0 + 0.5)), float(int(height / 2.0 + 0.5)))
    if width < height:
        w_resized = input_size
        h_resized = int((input_size / width * height + 63) // 64 * 64)
        factor = w_resized / width
    else:
        h_resized = input_size
        w_resized = int((input_size / height * width + 63) // 64 * 64)
        factor = h_resized / height
    return ResizeInfo((w_resized, h_resized), center, factor)


def resize_image(image: np.ndarray, info: ResizeInfo, scale: float = 1.0) -> np.ndarray:
    """HxWx3 uint8 -> the aligned canvas at ``scale`` (bilinear, black border), as the official code."""
    return cv2.warpAffine(image, info.matrix(scale), info.size_at(scale), flags=cv2.INTER_LINEAR)


def to_input_tensor(images: list[np.ndarray], device: torch.device | str, pad_to: tuple[int, int] | None = None
                    ) -> Tensor:
    """Stack HxWx3 uint8 RGB canvases (zero-padded bottom/right to ``pad_to`` = (W, H)) and normalise
    with the ImageNet mean/std on ``device`` -> (N, 3, H, W) float32."""
    if pad_to is not None:
        pw, ph = pad_to
        padded = []
        for im in images:
            canvas = np.zeros((ph, pw, 3), dtype=np.uint8)
            canvas[: im.shape[0], : im.shape[1]] = im
            padded.append(canvas)
        images = padded
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(images))).to(device, non_blocking=True)
    batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return batch.sub_(mean).div_(std)


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}"
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {desc}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image too small: {image.shape}")
