"""ImageNet normalisation, the one input convention of every HRNet/DEKR checkpoint we load:
RGB scaled to [0, 1], then ``(x - mean) / std`` per channel. Used by the training data path
(numpy, per sample, or torch, per batch on the device) and by inference preprocessing."""
from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

#: Per-channel RGB mean and standard deviation of ImageNet, on pixel values scaled to [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32, ImageNet-normalised."""
    # A 256-entry lookup per channel is exact (the same float32 values as the arithmetic) and
    # several times faster than it.
    lut = _normalize_lut()
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    out = np.empty(chw.shape, dtype=np.float32)
    for c in range(3):
        cv2.LUT(chw[c], lut[c], dst=out[c])
    return out


@functools.lru_cache(maxsize=1)
def _normalize_lut() -> np.ndarray:
    levels = np.arange(256, dtype=np.float64)[None, :] / 255.0
    values = (levels - np.asarray(IMAGENET_MEAN)[:, None]) / np.asarray(IMAGENET_STD)[:, None]
    return values.astype(np.float32).reshape(3, 1, 256)


def normalize_batch(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB, uint8 or float in [0, 255] -> float32 ImageNet-normalised, on the images'
    device."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (images.to(torch.float32) / 255.0 - mean) / std
