"""Test-time resize and normalisation.

Official (``resize="official"``): short side to the input size, long side aligned to 64. The
official ``get_multi_scale_size`` / ``resize_align_multi_scale`` warp the image with an
affine that maps the (rounded) image center to the center of the aligned canvas with one
uniform factor ``f = short side resized / short side``; the canvas is larger than the scaled image
along the long side (black borders). Predictions at scale 1 (input pixels of the base canvas)
map back to the original image with the inverse of that affine.

Letterbox (``resize="letterbox"``, SuperGradients' DEKR processing): the longest side to the
input size with ``cv2.resize`` (sizes rounded, bilinear; no resize when it already fits exactly),
the image in the top-left corner of a square ``input_size`` canvas, the rest filled with the pad
value. Predictions map back by ``xy / f``: SuperGradients' own postprocessing, and the
convention its training labels follow (``KeypointsLongestMaxSize`` scales keypoints by ``f``).
(``cv2.resize``'s pixel-centre convention would put them ``0.5 * (1/f - 1)`` px elsewhere.)
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from dekr.data.normalize import normalize_batch


@dataclass(frozen=True)
class ResizeInfo:
    """How one image was resized at scale 1.

    Attributes:
        base_size: (width, height) of the aligned input canvas at scale 1.
        center: (cx, cy) of the original image, rounded as in the official code.
        factor: uniform scale factor original -> base canvas.
        letterbox: the image sits in the top-left corner of the canvas, resized by ``factor``
            (``center`` is then unused); False: the official centred warp.
    """

    base_size: tuple[int, int]
    center: tuple[float, float]
    factor: float
    letterbox: bool = False

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
        if self.letterbox:
            return np.array([[f, 0.0, 0.0], [0.0, f, 0.0]], dtype=np.float64)
        cx, cy = self.center
        return np.array([[f, 0.0, w / 2.0 - f * cx], [0.0, f, h / 2.0 - f * cy]], dtype=np.float64)

    def to_original(self, xy: Tensor) -> Tensor:
        """(..., 2) base-canvas (scale 1) input-pixel coordinates -> original image coordinates."""
        if self.letterbox:
            return xy / self.factor
        w, h = self.base_size
        offset = xy.new_tensor([w / 2.0, h / 2.0])
        center = xy.new_tensor(self.center)
        return (xy - offset) / self.factor + center


def resize_info(height: int, width: int, input_size: int, resize: str = "official") -> ResizeInfo:
    """Official ``get_multi_scale_size(image, input_size, 1.0, 1.0)``, or with ``resize="letterbox"``
    the longest side to ``input_size`` on an ``input_size`` square canvas (SuperGradients)."""
    if resize == "letterbox":
        center = (width / 2.0, height / 2.0)
        return ResizeInfo((input_size, input_size), center, min(input_size / height, input_size / width), True)
    if resize != "official":
        raise ValueError(f"resize must be 'official' or 'letterbox', got {resize!r}")
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


def resize_image(image: np.ndarray, info: ResizeInfo, scale: float = 1.0, pad_value: int = 0) -> np.ndarray:
    """HxWx3 uint8 -> the canvas at ``scale``, bilinear, the border filled with ``pad_value``.

    Official: the aligned affine warp of the official code. Letterbox: SuperGradients'
    ``KeypointsLongestMaxSizeRescale`` (``cv2.resize`` to the rounded size) and
    ``KeypointsBottomRightPadding``.
    """
    size = info.size_at(scale)
    if not info.letterbox:
        return cv2.warpAffine(image, info.matrix(scale), size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(pad_value,) * 3)
    f = info.matrix(scale)[0, 0]
    h, w = image.shape[:2]
    if f != 1.0:
        # SuperGradients rounds with Python's round(); the min() guards the canvas against float noise.
        new_w, new_h = min(round(w * f), size[0]), min(round(h * f), size[1])
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((size[1], size[0], 3), pad_value, dtype=np.uint8)
    canvas[: image.shape[0], : image.shape[1]] = image[: size[1], : size[0]]
    return canvas


def to_input_tensor(images: list[np.ndarray], device: torch.device | str, pad_to: tuple[int, int] | None = None,
                    channel_order: str = "rgb", pad_value: int = 0) -> Tensor:
    """Stack HxWx3 uint8 RGB canvases (padded bottom/right with ``pad_value`` to ``pad_to`` = (W, H)) and
    normalise with the ImageNet mean/std on ``device`` -> (N, 3, H, W) float32.

    ``channel_order="bgr"`` reverses the channels before normalising, while the mean/std stay in RGB
    order: SuperGradients' DEKR processing (``ReverseImageChannels`` then ``NormalizeImage``
    with the ImageNet statistics), which its ``dekr_w32_no_dc`` weights were trained with.
    """
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    if pad_to is not None:
        pw, ph = pad_to
        padded = []
        for im in images:
            canvas = np.full((ph, pw, 3), pad_value, dtype=np.uint8)
            canvas[: im.shape[0], : im.shape[1]] = im
            padded.append(canvas)
        images = padded
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(images))).to(device, non_blocking=True)
    if channel_order == "bgr":
        batch = batch.flip(-1)
    return normalize_batch(batch.permute(0, 3, 1, 2))


def check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}"
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {desc}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image too small: {image.shape}")
