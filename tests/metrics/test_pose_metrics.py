"""Pose metrics against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from dekr.metrics.pose_metrics import (
    MPJPE,
    PAMPJPE,
    PCK,
    PCKAUC,
    PCP,
    PDJ,
    MeanOKS,
    PCKh,
    oks,
    procrustes_align,
)

# one pose, 4 keypoints; the truth spans a 10 x 20 box (bbox size 20)
TARGET = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [10.0, 20.0], [0.0, 20.0]]])
# errors: 1, 3, 5, 0 pixels
PREDS = torch.tensor([[[1.0, 0.0], [10.0, 3.0], [13.0, 24.0], [0.0, 20.0]]])


def test_pck_bbox():
    m = PCK(alpha=0.2)  # threshold 0.2 * 20 = 4 px: errors 1, 3, 0 pass, 5 fails
    m.update(PREDS, TARGET)
    assert m.compute().item() == pytest.approx(3 / 4)
    m = PCK(alpha=0.1)  # 2 px: 1 and 0 pass
    m.update(PREDS, TARGET)
    assert m.compute().item() == pytest.approx(2 / 4)


def test_pck_invisible_and_given_bbox_and_torso():
    vis = torch.tensor([[True, True, False, False]])
    m = PCK(alpha=0.1)
    m.update(PREDS, TARGET, vis, bbox=torch.tensor([[0.0, 0.0, 10.0, 40.0]]))  # size 40: 4 px
    assert m.compute().item() == pytest.approx(2 / 2)
    m = PCK(alpha=0.2, normalize="torso", torso_pair=(0, 2))  # torso sqrt(500)=22.36 -> 4.47 px
    m.update(PREDS, TARGET)
    assert m.compute().item() == pytest.approx(3 / 4)


def test_pckh_and_pdj():
    m = PCKh(alpha=0.5)
    m.update(PREDS, TARGET, head_size=torch.tensor([6.0]))  # 3 px: errors 1, 3, 0
    assert m.compute().item() == pytest.approx(3 / 4)
    m = PDJ(alpha=0.1, torso_pair=(1, 3))  # diameter sqrt(500) -> 2.236 px: errors 1, 0
    m.update(PREDS, TARGET)
    assert m.compute().item() == pytest.approx(2 / 4)


def test_pcp():
    # limbs (0,1) length 10 and (1,2) length 20, alpha 0.5 -> 5 px and 10 px
    m = PCP(limbs=[(0, 1), (1, 2), (2, 3)], alpha=0.2)
    # thresholds: limb01 2 px -> kp0 1 ok, kp1 3 fail; limb12 4 px -> kp1 3 ok, kp2 5 fail;
    # limb23 2 px -> kp2 fails
    m.update(PREDS, TARGET)
    assert m.compute().item() == pytest.approx(0 / 3)
    m = PCP(limbs=[(0, 1), (1, 2), (2, 3)], alpha=0.5)  # 5, 10, 5 px: limb01 ok, limb12 ok, limb23 ok
    m.update(PREDS, TARGET)
    assert m.compute().item() == pytest.approx(3 / 3)


def test_oks_hand_computed():
    sigmas = [0.1, 0.1, 0.1, 0.1]
    area = torch.tensor([200.0])
    value = oks(PREDS, TARGET, torch.ones(1, 4, dtype=torch.bool), area, sigmas)
    var = (2 * 0.1) ** 2
    expected = sum(math.exp(-d2 / var / 200 / 2) for d2 in (1, 9, 25, 0)) / 4
    assert value.item() == pytest.approx(expected)
    m = MeanOKS(sigmas)
    m.update(PREDS, TARGET, torch.ones(1, 4, dtype=torch.bool), area)
    m.update(TARGET, TARGET, torch.ones(1, 4, dtype=torch.bool), area)
    assert m.compute().item() == pytest.approx((expected + 1) / 2)


def test_mpjpe():
    m = MPJPE()
    m.update(PREDS, TARGET)
    assert m.compute().item() == pytest.approx((1 + 3 + 5 + 0) / 4)
    m = MPJPE()
    m.update(PREDS, TARGET, torch.tensor([[True, True, False, False]]))
    assert m.compute().item() == pytest.approx(2.0)


@pytest.mark.parametrize("dim", [2, 3])
def test_pa_mpjpe_removes_similarity_transform(dim):
    torch.manual_seed(0)
    target = torch.randn(3, 6, dim, dtype=torch.float64)
    angle = 0.7
    if dim == 2:
        rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    else:
        rot = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]],
                           dtype=torch.float64)
    preds = 2.5 * target @ rot.T + torch.tensor([3.0] * dim, dtype=torch.float64)
    m = PAMPJPE()
    m.update(preds, target)
    assert m.compute().item() == pytest.approx(0.0, abs=1e-9)
    m = MPJPE()
    m.update(preds, target)
    assert m.compute().item() > 1.0


def test_procrustes_hand_case():
    # a square scaled by 2 and shifted: aligned exactly; a noise pose: optimal scale shrinks it
    target = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    aligned = procrustes_align(target * 2 + 5, target)
    assert torch.allclose(aligned, target, atol=1e-9)
    # reflection is not allowed: a mirrored square aligns to itself only up to the best rotation
    mirrored = target * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    err = (procrustes_align(mirrored, target) - target).norm(dim=-1).mean()
    assert err > 0.1


def test_pck_auc_hand_computed():
    # errors 1, 3, 5, 0 and thresholds 0, 2, 4, 6: PCK = 1/4, 2/4, 3/4, 4/4
    m = PCKAUC(thresholds=[0, 2, 4, 6])
    m.update(PREDS, TARGET)
    assert m.pck_curve().tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0])
    expected = (2 * (0.25 + 0.5) / 2 + 2 * (0.5 + 0.75) / 2 + 2 * (0.75 + 1.0) / 2) / 6
    assert m.compute().item() == pytest.approx(expected)
    m = PCKAUC(thresholds=[0, 0.1, 0.2, 0.3], normalize="bbox")  # bbox 20: same thresholds in px
    m.update(PREDS, TARGET)
    assert m.compute().item() == pytest.approx(expected)


def test_bad_shapes_and_empty():
    with pytest.raises(ValueError, match="preds and target"):
        PCK().update(PREDS[:, :3], TARGET)
    with pytest.raises(ValueError, match="torso_pair"):
        PCK(normalize="torso")
    m = MPJPE()
    assert math.isnan(m.compute().item())
