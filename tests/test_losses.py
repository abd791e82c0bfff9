"""DEKR losses against the official formulas (HRNet/DEKR lib/core/loss.py, re-typed from the recipe)."""
from __future__ import annotations

import pytest
import torch

from dekr.losses import LossConfig, dekr_loss, heatmap_loss, offset_loss


def official_heatmap_loss(pred, gt, mask):
    # official HeatmapLoss: per-sample mean over (C, H, W); the trainer then averages the batch
    loss = ((pred - gt) ** 2) * mask
    return loss.mean(dim=3).mean(dim=2).mean(dim=1).mean(dim=0)


def official_offset_loss(pred, gt, weights, beta=1.0 / 9):
    num_pos = torch.nonzero(weights > 0).size()[0]
    l1 = torch.abs(pred - gt)
    loss = torch.where(l1 < beta, 0.5 * l1 ** 2 / beta, l1 - 0.5 * beta) * weights
    if num_pos == 0:
        num_pos = 1.0
    return loss.sum() / num_pos


def batch(n=3, k=17, r=32, seed=0, positive=True):
    g = torch.Generator().manual_seed(seed)
    hw = torch.where(torch.rand(n, k + 1, r, r, generator=g) > 0.8, 1.0, 0.1)
    hw[:, :, :4] = 0.0  # an ignored region
    ow = torch.zeros(n, 2 * k, r, r)
    if positive:
        ow[:, :, 5:14, 7:16] = torch.rand(n, 2 * k, 1, 1, generator=g) * 0.05 + 0.01
    return {
        "heatmap": torch.rand(n, k + 1, r, r, generator=g), "heatmap_weight": hw,
        "offset": torch.randn(n, 2 * k, r, r, generator=g) * 3, "offset_weight": ow,
    }, torch.rand(n, k + 1, r, r, generator=g), torch.randn(n, 2 * k, r, r, generator=g) * 3


@pytest.mark.parametrize("positive", [True, False])
def test_losses_equal_official_formulas(positive: bool) -> None:
    b, hm, off = batch(positive=positive)
    torch.testing.assert_close(heatmap_loss(hm, b["heatmap"], b["heatmap_weight"]),
                               official_heatmap_loss(hm, b["heatmap"], b["heatmap_weight"]))
    torch.testing.assert_close(offset_loss(off, b["offset"], b["offset_weight"]),
                               official_offset_loss(off, b["offset"], b["offset_weight"]))
    if not positive:
        assert offset_loss(off, b["offset"], b["offset_weight"]).item() == 0.0


def test_total_loss_uses_official_factors() -> None:
    b, hm, off = batch()
    out = dekr_loss(hm, off, b, LossConfig())
    torch.testing.assert_close(out["heatmap_loss"], official_heatmap_loss(hm, b["heatmap"], b["heatmap_weight"]))
    torch.testing.assert_close(out["offset_loss"], 0.03 * official_offset_loss(off, b["offset"], b["offset_weight"]))
    torch.testing.assert_close(out["loss"], out["heatmap_loss"] + out["offset_loss"])
    scaled = dekr_loss(hm, off, b, LossConfig(heatmap_factor=2.0, offset_factor=0.0))
    torch.testing.assert_close(scaled["loss"], 2 * out["heatmap_loss"])


def test_perfect_prediction_has_zero_loss_and_gradients_flow() -> None:
    b, hm, off = batch()
    assert dekr_loss(b["heatmap"], b["offset"], b, LossConfig())["loss"].item() == 0.0
    hm.requires_grad_(True)
    off.requires_grad_(True)
    dekr_loss(hm, off, b, LossConfig())["loss"].backward()
    assert hm.grad.abs().sum() > 0 and off.grad.abs().sum() > 0
    # ignored pixels (weight 0) get no gradient
    assert hm.grad[:, :, :4].abs().sum() == 0


def test_loss_keeps_float64_and_computes_half_precision_in_float32() -> None:
    b, hm, off = batch()
    reference = dekr_loss(hm.double(), off.double(), {k: v.double() for k, v in b.items()}, LossConfig())
    assert all(v.dtype == torch.float64 for v in reference.values())  # a float64 step stays float64
    for half in (torch.bfloat16, torch.float16):
        # mixed precision: half outputs, float32 targets -> the loss is computed in float32
        out = dekr_loss(hm.to(half), off.to(half), b, LossConfig())
        assert all(v.dtype == torch.float32 for v in out.values())
        upcast = dekr_loss(hm.to(half).float(), off.to(half).float(), b, LossConfig())
        for key in out:
            assert out[key].item() == upcast[key].item(), key
