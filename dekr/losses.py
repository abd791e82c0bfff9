"""DEKR training losses, with the official semantics (weighted heatmap MSE, area-normalised offset smooth L1)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class LossConfig:
    """Loss factors. Defaults: the official recipe (heatmap 1.0, offsets 0.03, smooth-L1 beta 1/9)."""

    heatmap_factor: float = 1.0
    offset_factor: float = 0.03
    smooth_l1_beta: float = 1.0 / 9.0


def heatmap_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Weighted MSE, mean over every element. All (N, K+1, H, W); weight is 0.1 on background,
    1 where a Gaussian was drawn, 0 on ignored regions."""
    return ((pred - target) ** 2 * weight).mean()


def offset_loss(pred: Tensor, target: Tensor, weight: Tensor, beta: float = 1.0 / 9.0) -> Tensor:
    """Smooth-L1 times weight, summed, divided by the number of weighted elements (at least 1).

    All (N, 2K, H, W). The normaliser counts (channel, pixel) elements with weight > 0 in the
    whole batch, as the official ``OffsetsLoss`` does.
    """
    num_positive = (weight > 0).sum().clamp(min=1)
    return (F.smooth_l1_loss(pred, target, reduction="none", beta=beta) * weight).sum() / num_positive


def loss_precision(pred: Tensor) -> Tensor:
    """``pred`` in the precision the loss is computed in: float16/bfloat16 outputs (mixed
    precision) are upcast to float32, float32 and float64 stay as they are."""
    return pred.float() if pred.dtype in (torch.float16, torch.bfloat16) else pred


def dekr_loss(heatmaps: Tensor, offsets: Tensor, batch: dict[str, Tensor], cfg: LossConfig) -> dict[str, Tensor]:
    """Both weighted losses and their sum, from the network outputs and a training batch.

    Computed in float32 for half-precision outputs (see :func:`loss_precision`), otherwise in
    the outputs' own dtype (a float64 step stays float64).
    """
    heatmaps, offsets = loss_precision(heatmaps), loss_precision(offsets)
    hm = heatmap_loss(heatmaps, batch["heatmap"], batch["heatmap_weight"]) * cfg.heatmap_factor
    off = offset_loss(offsets, batch["offset"], batch["offset_weight"], cfg.smooth_l1_beta) * cfg.offset_factor
    return {"loss": hm + off, "heatmap_loss": hm, "offset_loss": off}


__all__ = ["LossConfig", "heatmap_loss", "offset_loss", "loss_precision", "dekr_loss"]
