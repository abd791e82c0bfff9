"""Training augmentation: the official DEKR random affine warp and horizontal flip.

The geometric part is one affine matrix per sample, computed here and applied with
``cv2.warpAffine`` to the image (at the input size S) and to the ignore mask (at the output size
R = S/4), and by matrix product to the keypoints (output-map coordinates). We do not use
albumentations' ``Affine``/``HorizontalFlip`` for it because:

* the recipe's scale is relative to the short side with a centre-and-200px convention, and the
  image and the mask go to *different* resolutions (S and R) through the same geometry, which an
  albumentations ``Compose`` (one shape for every target) cannot express;
* ``HorizontalFlip`` does not swap left/right keypoints, and ``KeypointParams`` drops keypoints
  that leave the frame, breaking the per-person keypoint order (STYLE.md, pitfall 5).

The warp is still albumentations-shaped (``transform(image=..., mask=..., keypoints=...)``
returning a dict), and any albumentations *pixel-level* transform (``ColorJitter``,
``GaussianBlur``, ``GaussNoise``, ...) can be appended from config via
``AugmentationConfig.pixel_transforms``; they run on the warped uint8 image, before
normalisation. Geometric albumentations transforms are refused, because they would move pixels
without moving the keypoints and the mask.

Coordinate conventions: pixel centres at integer coordinates (OpenCV's ``warpAffine``), keypoints
as (x, y); an output-map coordinate u corresponds to the input coordinate u * S / R (the official
convention, which the decoder inverts).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

@dataclass
class AugmentationConfig:
    """Random affine + flip parameters; defaults are the official DEKR training recipe.

    Attributes:
        min_scale, max_scale: random zoom factor range applied to the short side.
        max_rotation: rotation range in degrees, uniform in [-max_rotation, max_rotation].
        max_translate: translation bound in pixels, multiplied by the scale (short side / 200 x zoom).
        flip_prob: probability of a horizontal flip (left/right keypoints swapped from the spec).
        scale_type: ``short`` (official) or ``long``: which image side the scale refers to.
        pixel_transforms: albumentations pixel-level transforms applied after the warp, each
            ``{"name": "ColorJitter", "params": {...}}`` (name of a class in ``albumentations``).
        enabled: False gives the deterministic centre warp (no random scale/rotation/shift/flip).
    """

    min_scale: float = 0.75
    max_scale: float = 1.5
    max_rotation: float = 30.0
    max_translate: float = 40.0
    flip_prob: float = 0.5
    scale_type: str = "short"
    pixel_transforms: list[dict[str, Any]] = field(default_factory=list)
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.scale_type not in ("short", "long"):
            raise ValueError(f"scale_type must be 'short' or 'long', got {self.scale_type!r}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must lie in [0, 1], got {self.flip_prob}")


@dataclass(frozen=True)
class AffineParams:
    """One sample's random draw (original-image frame)."""

    center: tuple[float, float]
    scale_px: float  # side of the source square that maps onto the output (official: 200 * scale)
    rotation: float  # degrees
    flip: bool


def build_pixel_transforms(specs: list[dict[str, Any]]):
    """albumentations ``Compose`` of pixel-level transforms from config dicts, or None if empty."""
    if not specs:
        return None
    import albumentations as A

    transforms = []
    for item in specs:
        if "name" not in item:
            raise ValueError(f"pixel transform {item!r} needs a 'name' (an albumentations class)")
        name = item["name"]
        cls = getattr(A, name, None)
        if cls is None:
            raise ValueError(f"albumentations has no transform named {name!r}")
        if not issubclass(cls, A.ImageOnlyTransform):
            raise ValueError(
                f"albumentations.{name} is not a pixel-level transform: geometric transforms would move "
                "pixels without moving keypoints and masks; use the affine parameters instead")
        transforms.append(cls(**dict(item.get("params", {}))))
    return A.Compose(transforms)


def affine_matrix(center: tuple[float, float], scale_px: float, out_size: int, rotation: float) -> np.ndarray:
    """3x3 matrix mapping original-image (x, y) to a square of side ``out_size`` (official formula).

    The square of side ``scale_px`` centred at ``center`` fills the output; the result is then
    rotated by ``rotation`` degrees about the output centre.
    """
    s = out_size / scale_px
    t = np.array([[s, 0.0, out_size * (0.5 - center[0] / scale_px)],
                  [0.0, s, out_size * (0.5 - center[1] / scale_px)],
                  [0.0, 0.0, 1.0]])
    if rotation != 0:
        rad = -rotation * np.pi / 180.0  # the official sign convention
        sn, cs = math.sin(rad), math.cos(rad)
        rot = np.array([[cs, -sn, 0.0], [sn, cs, 0.0], [0.0, 0.0, 1.0]])
        shift = np.array([[1.0, 0.0, -out_size / 2], [0.0, 1.0, -out_size / 2], [0.0, 0.0, 1.0]])
        unshift = np.array([[1.0, 0.0, out_size / 2], [0.0, 1.0, out_size / 2], [0.0, 0.0, 1.0]])
        t = unshift @ rot @ shift @ t
    return t


def _flip_matrix(width: int) -> np.ndarray:
    """x -> width - 1 - x (pixel i goes to pixel width-1-i, as ``cv2.flip``)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


class DEKRAffineTransform:
    """The official random affine warp + horizontal flip as one matrix per sample.

    Call it albumentations-style: ``out = t(image=img, mask=mask, keypoints=joints, rng=rng)``
    with ``img`` (H, W, 3) uint8 RGB, ``mask`` (H, W) uint8 (1 = keep, 0 = ignore) or None,
    ``joints`` (P, J, 3) float64 (x, y, v) in the original image (J = K keypoints + the centre).
    Returns ``image`` (S, S, 3) uint8, ``mask`` (R, R) uint8 or None, ``keypoints`` (P, J, 3) in
    output-map coordinates with left/right swapped on a flip (v = 0 for points leaving the map,
    unless ``official_visibility``), ``params`` and ``scale_factor`` (the official "scale
    product" (S / scale_px)^2, used to bring an image-frame area into input pixels).

    ``official_flip``: the official code flips after the warp, the image as x -> S-1-x and the
    keypoints as x -> R-1-x, which leaves them 3 input pixels (S/R - 1) apart. The default
    flips in the original image before the warp, so the keypoints stay exactly on their pixels.

    ``official_visibility``: the official warp never changes v; its target generators skip
    points outside the map by their coordinates, except that the offset generator truncates the
    centre with ``int()``, so a centre in (-1, 0) still owns offsets (``targets.py``). Keeping v
    reproduces that. The default sets v = 0 for every point outside [0, R) x [0, R).
    """

    def __init__(self, input_size: int, output_size: int, flip_index: list[int],
                 config: AugmentationConfig | None = None, official_flip: bool = False,
                 official_visibility: bool = False) -> None:
        self.input_size = int(input_size)
        self.output_size = int(output_size)
        self.config = config or AugmentationConfig()
        # The centre (last joint) maps to itself.
        self.flip_index = np.asarray(list(flip_index) + [len(flip_index)], dtype=np.int64)
        self.official_flip = official_flip
        self.official_visibility = official_visibility

    def sample_params(self, height: int, width: int, rng: np.random.Generator | None) -> AffineParams:
        cfg = self.config
        side = min(height, width) if cfg.scale_type == "short" else max(height, width)
        center = [width / 2.0, height / 2.0]
        if not cfg.enabled or rng is None:
            return AffineParams((center[0], center[1]), float(side), 0.0, False)
        zoom = rng.random() * (cfg.max_scale - cfg.min_scale) + cfg.min_scale
        scale_px = side * zoom
        rotation = (rng.random() * 2 - 1) * cfg.max_rotation
        if cfg.max_translate > 0:
            # official: np.random.randint(-t, t) with t = max_translate * (scale_px / 200)
            bound = cfg.max_translate * scale_px / 200.0
            low, high = int(-bound), int(bound)
            if high > low:
                center[0] += int(rng.integers(low, high))
                center[1] += int(rng.integers(low, high))
        flip = bool(rng.random() < cfg.flip_prob)
        return AffineParams((center[0], center[1]), float(scale_px), float(rotation), flip)

    def matrices(self, params: AffineParams, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(input matrix for the image at S, output matrix for mask and keypoints at R), 3x3 each."""
        m_in = affine_matrix(params.center, params.scale_px, self.input_size, params.rotation)
        ratio = self.output_size / self.input_size
        m_out = np.diag([ratio, ratio, 1.0]) @ m_in
        if params.flip:
            if self.official_flip:
                m_in = _flip_matrix(self.input_size) @ m_in
                m_out = _flip_matrix(self.output_size) @ m_out
            else:
                flip = _flip_matrix(width)
                m_in = m_in @ flip
                m_out = m_out @ flip
        return m_in, m_out

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None, keypoints: np.ndarray | None = None,
                 rng: np.random.Generator | None = None,
                 params: AffineParams | None = None) -> dict[str, Any]:
        height, width = image.shape[:2]
        if params is None:
            params = self.sample_params(height, width, rng)
        m_in, m_out = self.matrices(params, width)
        size = (self.input_size, self.input_size)
        out_image = cv2.warpAffine(image, m_in[:2], size, flags=cv2.INTER_LINEAR)
        out_mask = None
        if mask is not None:
            # official: warp the 0/255 mask bilinearly at the output size, then threshold at 0.5
            warped = cv2.warpAffine(mask * np.uint8(255), m_out[:2], (self.output_size, self.output_size),
                                    flags=cv2.INTER_LINEAR)
            out_mask = (warped > 127).astype(np.uint8)
        out_kpts = None
        if keypoints is not None:
            out_kpts = self.warp_keypoints(keypoints, m_out, params.flip)
        scale_factor = (self.input_size / params.scale_px) ** 2
        return {"image": out_image, "mask": out_mask, "keypoints": out_kpts, "params": params,
                "matrix_input": m_in, "matrix_output": m_out, "scale_factor": scale_factor}

    def warp_keypoints(self, keypoints: np.ndarray, m_out: np.ndarray, flip: bool) -> np.ndarray:
        """(P, J, 3) image-frame (x, y, v) -> output-map (x, y, v) by ``m_out`` (3x3), flip-reordered.

        v = 0 for points outside [0, R) x [0, R) unless ``official_visibility`` (class docstring).
        """
        kpts = np.array(keypoints, dtype=np.float64, copy=True)
        if kpts.size == 0:
            return kpts.reshape(0, len(self.flip_index), 3)
        xy = kpts[..., :2] @ m_out[:2, :2].T + m_out[:2, 2]
        kpts[..., :2] = xy
        if flip:
            kpts = kpts[:, self.flip_index]
        if self.official_visibility:
            return kpts
        r = self.output_size
        outside = (kpts[..., 0] < 0) | (kpts[..., 1] < 0) | (kpts[..., 0] >= r) | (kpts[..., 1] >= r)
        kpts[..., 2] = np.where(outside, 0.0, kpts[..., 2])
        return kpts
