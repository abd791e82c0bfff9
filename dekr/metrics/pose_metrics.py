"""Per-pose keypoint metrics as torchmetrics ``Metric``s (sum states, DDP-safe), plus functional forms.

All take matched pose pairs: ``preds`` and ``target`` (N, K, D) with D = 2 (pixels) or 3, and
``visible`` (N, K) bool for the ground-truth keypoints that count. Invisible keypoints never count.

- :class:`PCK` -- fraction of keypoints within ``alpha x normaliser`` of the truth; the normaliser is
  the bbox size (max of the visible keypoints' extent, or a given bbox), the torso size (distance of
  two given keypoints) or a per-pose size passed to ``update`` (e.g. head size: :class:`PCKh`).
- :class:`PCKh` -- PCK normalised by the head segment size given per pose (MPII: alpha 0.5).
- :class:`PCP` -- fraction of limbs whose both endpoints lie within ``alpha x limb length``.
- :class:`PDJ` -- fraction of keypoints within ``alpha x torso diameter``.
- :class:`MeanOKS` -- mean object keypoint similarity per pose pair (COCO formula, spec sigmas).
- :class:`MPJPE` / :class:`PAMPJPE` -- mean per-joint position error, raw or after a Procrustes
  alignment (scale, rotation, translation) of each predicted pose onto its target.
- :class:`PCKAUC` -- area under the PCK curve over a threshold range, normalised to [0, 1].
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


def _check(preds: Tensor, target: Tensor, visible: Tensor | None) -> Tensor:
    if preds.shape != target.shape or preds.dim() != 3:
        raise ValueError(f"preds and target must both be (N, K, D), got {tuple(preds.shape)} and {tuple(target.shape)}")
    if visible is None:
        return torch.ones(preds.shape[:2], dtype=torch.bool, device=preds.device)
    if visible.shape != preds.shape[:2]:
        raise ValueError(f"visible must be (N, K) = {tuple(preds.shape[:2])}, got {tuple(visible.shape)}")
    return visible.bool()


def keypoint_distances(preds: Tensor, target: Tensor) -> Tensor:
    """(N, K, D) x2 -> (N, K) Euclidean distances."""
    return (preds.double() - target.double()).norm(dim=-1)


def bbox_size(target: Tensor, visible: Tensor) -> Tensor:
    """(N,) max(width, height) of the visible ground-truth keypoints' extent (2D: x, y)."""
    big = torch.finfo(torch.float64).max
    xy = target[..., :2].double()
    lo = torch.where(visible[..., None], xy, torch.full_like(xy, big)).amin(dim=1)
    hi = torch.where(visible[..., None], xy, torch.full_like(xy, -big)).amax(dim=1)
    size = (hi - lo).amax(dim=-1)
    return torch.where(visible.any(dim=1), size, torch.zeros_like(size))


def pair_distance(target: Tensor, pair: tuple[int, int]) -> Tensor:
    """(N,) distance between two ground-truth keypoints (torso diameter, head size, ...)."""
    return (target[:, pair[0]].double() - target[:, pair[1]].double()).norm(dim=-1)


def pck_correct(preds: Tensor, target: Tensor, visible: Tensor, normaliser: Tensor, alpha: float) -> Tensor:
    """(N, K) bool: visible keypoints within ``alpha * normaliser``; poses with normaliser <= 0 never count."""
    dist = keypoint_distances(preds, target)
    ok = dist <= alpha * normaliser.double()[:, None]
    return ok & visible & (normaliser[:, None] > 0)


def oks(preds: Tensor, target: Tensor, visible: Tensor, area: Tensor, sigmas: Sequence[float] | Tensor) -> Tensor:
    """(N,) COCO object keypoint similarity of matched pose pairs (2D), pycocotools' formula.

    ``area``: (N,) object area (COCO: segmentation area; CrowdPose: 0.53 x bbox area).
    Poses without visible keypoints get NaN.
    """
    visible = _check(preds, target, visible)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64, device=preds.device)
    var = (2 * sigmas) ** 2
    d2 = ((preds[..., :2].double() - target[..., :2].double()) ** 2).sum(-1)
    e = d2 / var / (area.double()[:, None] + torch.finfo(torch.float64).eps) / 2
    sim = torch.exp(-e) * visible
    return sim.sum(1) / visible.sum(1)


def procrustes_align(preds: Tensor, target: Tensor, visible: Tensor | None = None) -> Tensor:
    """Align each predicted pose to its target with the similarity transform (scale s, rotation R,
    translation t) minimising sum ||s R p + t - q||^2 over the visible keypoints (Umeyama; no reflection).

    preds, target: (N, K, D) -> aligned preds (N, K, D).
    """
    visible = _check(preds, target, visible)
    p, q = preds.double(), target.double()
    w = visible.double()[..., None]
    n = w.sum(1, keepdim=True).clamp(min=1)
    mu_p, mu_q = (p * w).sum(1, keepdim=True) / n, (q * w).sum(1, keepdim=True) / n
    p0, q0 = (p - mu_p) * w, (q - mu_q) * w
    cov = q0.transpose(1, 2) @ p0  # (N, D, D)
    u, sing, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u @ vh))
    fix = torch.ones_like(sing)
    fix[:, -1] = d
    rot = u @ torch.diag_embed(fix) @ vh
    var_p = (p0 ** 2).sum((1, 2))
    scale = (sing * fix).sum(1) / var_p.clamp(min=torch.finfo(torch.float64).tiny)
    aligned = scale[:, None, None] * (p - mu_p) @ rot.transpose(1, 2) + mu_q
    return aligned.to(preds.dtype)


class _RatioMetric(Metric):
    """sum(numerator) / sum(denominator) with sum states."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("numerator", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("denominator", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _add(self, numerator: Tensor, denominator: Tensor) -> None:
        self.numerator += numerator.double().sum()
        self.denominator += denominator.double().sum()

    def compute(self) -> Tensor:
        if self.denominator == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return self.numerator / self.denominator


class PCK(_RatioMetric):
    """PCK@alpha.

    Args:
        alpha: threshold as a fraction of the normaliser.
        normalize: ``"bbox"`` (max side of the visible keypoints' box, or the ``bbox`` (N, 4) xywh passed
            to ``update``), ``"torso"`` (distance of keypoints ``torso_pair``) or ``"given"``
            (``normaliser`` (N,) passed to ``update``, e.g. head sizes).
    """

    higher_is_better = True

    def __init__(self, alpha: float = 0.2, normalize: str = "bbox", torso_pair: tuple[int, int] | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if normalize not in ("bbox", "torso", "given"):
            raise ValueError(f"normalize must be 'bbox', 'torso' or 'given', got {normalize!r}")
        if normalize == "torso" and torso_pair is None:
            raise ValueError("normalize='torso' needs torso_pair=(a, b), e.g. (left_shoulder, right_hip)")
        self.alpha, self.normalize, self.torso_pair = alpha, normalize, torso_pair

    def _normaliser(self, target: Tensor, visible: Tensor, bbox: Tensor | None, normaliser: Tensor | None) -> Tensor:
        if self.normalize == "given":
            if normaliser is None:
                raise ValueError("normalize='given' needs normaliser=(N,) in update()")
            return normaliser.double()
        if self.normalize == "bbox":
            return bbox[:, 2:4].double().amax(dim=1) if bbox is not None else bbox_size(target, visible)
        return pair_distance(target, self.torso_pair)  # type: ignore[arg-type]

    def update(self, preds: Tensor, target: Tensor, visible: Tensor | None = None, bbox: Tensor | None = None,
               normaliser: Tensor | None = None) -> None:  # type: ignore[override]
        visible = _check(preds, target, visible)
        norm = self._normaliser(target, visible, bbox, normaliser)
        correct = pck_correct(preds, target, visible, norm, self.alpha)
        self._add(correct.sum(), (visible & (norm[:, None] > 0)).sum())


class PCKh(PCK):
    """PCKh@alpha: PCK normalised by the head segment size given per pose (``head_size`` in update)."""

    def __init__(self, alpha: float = 0.5, **kwargs) -> None:
        super().__init__(alpha=alpha, normalize="given", **kwargs)

    def update(self, preds: Tensor, target: Tensor, visible: Tensor | None = None,  # type: ignore[override]
               head_size: Tensor | None = None) -> None:
        super().update(preds, target, visible, normaliser=head_size)


class PDJ(PCK):
    """Percentage of detected joints: within ``alpha x`` the torso diameter (distance of ``torso_pair``)."""

    def __init__(self, alpha: float = 0.2, torso_pair: tuple[int, int] = (5, 12), **kwargs) -> None:
        super().__init__(alpha=alpha, normalize="torso", torso_pair=torso_pair, **kwargs)


class PCP(_RatioMetric):
    """Percentage of correct parts: a limb (a, b) is correct when both predicted endpoints lie within
    ``alpha x`` the ground-truth limb length of their truth. Limbs with an invisible endpoint do not count."""

    higher_is_better = True

    def __init__(self, limbs: Sequence[tuple[int, int]], alpha: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if not limbs:
            raise ValueError("PCP needs limbs, e.g. spec.skeleton")
        self.register_buffer("limb_a", torch.tensor([a for a, _ in limbs]), persistent=False)
        self.register_buffer("limb_b", torch.tensor([b for _, b in limbs]), persistent=False)
        self.alpha = alpha

    def update(self, preds: Tensor, target: Tensor, visible: Tensor | None = None) -> None:  # type: ignore[override]
        visible = _check(preds, target, visible)
        a, b = self.limb_a.to(preds.device), self.limb_b.to(preds.device)
        length = (target[:, a].double() - target[:, b].double()).norm(dim=-1)  # (N, L)
        dist = keypoint_distances(preds, target)
        ok = (dist[:, a] <= self.alpha * length) & (dist[:, b] <= self.alpha * length)
        counted = visible[:, a] & visible[:, b]
        self._add((ok & counted).sum(), counted.sum())


class MeanOKS(_RatioMetric):
    """Mean OKS over matched pose pairs (poses without visible keypoints skipped)."""

    higher_is_better = True

    def __init__(self, sigmas: Sequence[float], **kwargs) -> None:
        super().__init__(**kwargs)
        self.sigmas = list(sigmas)

    def update(self, preds: Tensor, target: Tensor, visible: Tensor, area: Tensor) -> None:  # type: ignore[override]
        values = oks(preds, target, visible, area, self.sigmas)
        ok = torch.isfinite(values)
        self._add(values[ok].sum(), ok.sum())


class MPJPE(_RatioMetric):
    """Mean per-joint position error over visible keypoints (units of the input, 2D or 3D)."""

    higher_is_better = False

    def update(self, preds: Tensor, target: Tensor, visible: Tensor | None = None) -> None:  # type: ignore[override]
        visible = _check(preds, target, visible)
        self._add((keypoint_distances(preds, target) * visible).sum(), visible.sum())


class PAMPJPE(MPJPE):
    """MPJPE after Procrustes alignment (scale, rotation, translation) of each pose to its target."""

    def update(self, preds: Tensor, target: Tensor, visible: Tensor | None = None) -> None:  # type: ignore[override]
        visible = _check(preds, target, visible)
        super().update(procrustes_align(preds, target, visible), target, visible)


class PCKAUC(Metric):
    """Area under the PCK curve over ``thresholds`` (trapezoid, divided by the range: in [0, 1]).

    Thresholds are absolute distances when ``normalize="none"`` (e.g. 0-150 mm for 3D), else
    fractions of the bbox size (``"bbox"``) or of a ``normaliser`` passed to ``update`` (``"given"``).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, thresholds: Sequence[float] | Tensor | None = None, normalize: str = "none", **kwargs) -> None:
        super().__init__(**kwargs)
        if normalize not in ("none", "bbox", "given"):
            raise ValueError(f"normalize must be 'none', 'bbox' or 'given', got {normalize!r}")
        thresholds = torch.linspace(0, 150, 31) if thresholds is None else torch.as_tensor(thresholds)
        if thresholds.numel() < 2:
            raise ValueError("PCKAUC needs at least two thresholds")
        self.register_buffer("thresholds", thresholds.double(), persistent=False)
        self.normalize = normalize
        self.add_state("correct", default=torch.zeros(thresholds.numel(), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, visible: Tensor | None = None,  # type: ignore[override]
               normaliser: Tensor | None = None) -> None:
        visible = _check(preds, target, visible)
        dist = keypoint_distances(preds, target)
        if self.normalize == "bbox":
            normaliser = bbox_size(target, visible)
        elif self.normalize == "given" and normaliser is None:
            raise ValueError("normalize='given' needs normaliser=(N,) in update()")
        if normaliser is not None and self.normalize != "none":
            visible = visible & (normaliser[:, None] > 0)
            dist = dist / normaliser.double().clamp(min=torch.finfo(torch.float64).tiny)[:, None]
        d = dist[visible]
        self.correct += (d[None, :] <= self.thresholds.to(d.device)[:, None]).double().sum(1)
        self.total += visible.sum()

    def pck_curve(self) -> Tensor:
        return self.correct / self.total if self.total > 0 else torch.full_like(self.correct, float("nan"))

    def compute(self) -> Tensor:
        curve = self.pck_curve()
        t = self.thresholds.to(curve.device)
        return torch.trapezoid(curve, t) / (t[-1] - t[0])
