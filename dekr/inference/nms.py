"""Center NMS (max-pool) and pose NMS, batched over images.

Pose NMS follows the official rule: pose i overlaps pose j when more than ``num_thre``
keypoints of j lie closer to i's than ``thre * sqrt(area_i)``, with
``area_i = (max x - min x)^2 + (max y - min y)^2`` over i's keypoints (note: not symmetric).
The official greedy pass visits the proposals in order; an unvisited, unsuppressed proposal i
forms the group of the poses it overlaps, the group's best pose by heat score is kept and the
whole group suppressed -- unless that best pose was already suppressed, in which case nothing
happens for i. The overlap matrices are computed batched on the device; the greedy pass runs on
the small (Q, Q) boolean matrix per image on the CPU.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def center_pool_kernel(height: int, width: int, thresholds: tuple[float, float] = (300.0, 200.0)) -> int:
    """Official size-dependent max-pool kernel: 7 if (h+w)/2 > thresholds[0], 5 if > thresholds[1], else 3."""
    map_size = (height + width) / 2.0
    if map_size > thresholds[0]:
        return 7
    if map_size > thresholds[1]:
        return 5
    return 3


def center_nms(center_heatmap: Tensor, max_num: int, threshold: float,
               thresholds: tuple[float, float] = (300.0, 200.0)) -> tuple[Tensor, Tensor, Tensor]:
    """Local maxima of the center heatmap.

    Args:
        center_heatmap: (N, H, W).
        max_num: top-k per image.
        threshold: minimum score (strict ``>``, as the official code).

    Returns:
        scores (N, P), flat pixel indices (N, P) into H*W, valid (N, P) with P = min(max_num, H*W),
        sorted by descending score.
    """
    n, h, w = center_heatmap.shape
    kernel = center_pool_kernel(h, w, thresholds)
    pooled = F.max_pool2d(center_heatmap[:, None], kernel, stride=1, padding=(kernel - 1) // 2)[:, 0]
    peaks = center_heatmap * (pooled == center_heatmap)
    scores, index = peaks.reshape(n, -1).topk(min(max_num, h * w), dim=1)
    return scores, index, scores > threshold


def pose_overlap(poses: Tensor, valid: Tensor, thre: float, num_thre: int) -> Tensor:
    """Official pose-overlap matrix.

    Args:
        poses: (N, Q, K, 2) keypoint coordinates.
        valid: (N, Q) proposals that exist.

    Returns:
        (N, Q, Q) bool, ``[n, i, j]``: proposal i groups proposal j. The diagonal of valid proposals
        is always True (the official code relies on it through area > 0 and K > num_thre).
    """
    extent = poses.amax(dim=2) - poses.amin(dim=2)  # (N, Q, 2)
    area = (extent ** 2).sum(-1)  # (N, Q)
    dist = (poses[:, :, None] - poses[:, None]).pow(2).sum(-1).sqrt()  # (N, Q, Q, K)
    close = (dist < thre * area.sqrt()[:, :, None, None]).sum(-1)  # (N, Q, Q)
    overlap = close > num_thre
    eye = torch.eye(poses.shape[1], dtype=torch.bool, device=poses.device)
    overlap = overlap | eye
    return overlap & valid[:, :, None] & valid[:, None, :]


def greedy_group_nms(overlap: np.ndarray, scores: np.ndarray, valid: np.ndarray) -> list[int]:
    """The official greedy pass over one image's (Q, Q) overlap matrix; returns kept indices in order."""
    suppressed = ~valid.copy()
    keep: list[int] = []
    for i in range(overlap.shape[0]):
        if suppressed[i]:
            continue
        group = np.flatnonzero(overlap[i])
        best = int(group[np.argmax(scores[group])])
        if suppressed[best]:
            continue
        keep.append(best)
        suppressed[group] = True
    return keep


def pose_nms(poses: Tensor, heat_score: Tensor, valid: Tensor, thre: float, num_thre: int, max_num: int
             ) -> list[Tensor]:
    """Batched official pose NMS.

    Args:
        poses: (N, Q, K, 2) keypoint coordinates (any frame; the thresholds are relative).
        heat_score: (N, Q) ranking score (mean heatmap value at the keypoints).
        valid: (N, Q) proposals that exist.
        max_num: keep at most this many (the best by heat score) per image.

    Returns:
        per image a (P,) long tensor of kept proposal indices on the input device, in the official
        order (greedy order, or descending heat score when capped to ``max_num``).
    """
    if poses.shape[1] == 0:
        return [torch.zeros(0, dtype=torch.long, device=poses.device) for _ in range(poses.shape[0])]
    overlap = pose_overlap(poses, valid, thre, num_thre).cpu().numpy()
    scores = heat_score.detach().float().cpu().numpy()
    valid_np = valid.cpu().numpy()
    out = []
    for n in range(poses.shape[0]):
        keep = greedy_group_nms(overlap[n], scores[n], valid_np[n])
        if len(keep) > max_num:
            order = np.argsort(-scores[n][keep], kind="stable")[:max_num]
            keep = [keep[i] for i in order]
        out.append(torch.as_tensor(keep, dtype=torch.long).to(poses.device))
    return out
