"""Hand-built cases for center NMS and each pose-NMS rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dekr.inference.nms import center_nms, center_pool_kernel, greedy_group_nms, pose_nms, pose_overlap


def test_center_pool_kernel_by_map_size():
    assert center_pool_kernel(128, 128) == 3
    assert center_pool_kernel(200, 200) == 3  # not > 200
    assert center_pool_kernel(201, 201) == 5
    assert center_pool_kernel(300, 300) == 5
    assert center_pool_kernel(128, 600) == 7  # (128 + 600) / 2 = 364 > 300


def test_center_nms_suppresses_neighbours_and_thresholds():
    hm = torch.zeros(1, 20, 20)
    hm[0, 5, 5] = 0.9
    hm[0, 5, 6] = 0.8  # neighbour of a higher peak: suppressed with kernel 3
    hm[0, 5, 8] = 0.7  # 3 px away: a separate peak with kernel 3
    hm[0, 15, 15] = 0.005  # below the 0.01 threshold
    scores, index, valid = center_nms(hm, max_num=5, threshold=0.01)
    kept = index[0][valid[0]].tolist()
    assert kept == [5 * 20 + 5, 5 * 20 + 8]
    assert scores[0][valid[0]].tolist() == pytest.approx([0.9, 0.7])


def test_center_nms_kernel_5_on_large_maps():
    hm = torch.zeros(1, 240, 240)  # (240 + 240) / 2 > 200: kernel 5
    hm[0, 50, 50] = 0.9
    hm[0, 50, 52] = 0.8  # within 2 px: suppressed by kernel 5
    hm[0, 50, 55] = 0.7  # 3 px from the suppressed one, 5 from the peak: survives
    _, index, valid = center_nms(hm, max_num=5, threshold=0.01)
    assert index[0][valid[0]].tolist() == [50 * 240 + 50, 50 * 240 + 55]


def test_center_nms_top_k_batched():
    hm = torch.zeros(2, 32, 32)
    for i in range(10):
        hm[0, 3 * (i // 5) + 2, 6 * (i % 5) + 2] = 0.1 + 0.05 * i
    scores, index, valid = center_nms(hm, max_num=4, threshold=0.01)
    assert scores.shape == (2, 4)
    assert valid[0].all() and not valid[1].any()
    assert scores[0].tolist() == pytest.approx([0.55, 0.5, 0.45, 0.4])


def _square(x, y, size, k=10):
    """k keypoints on a square outline of side `size` at (x, y)."""
    t = np.linspace(0, 1, k, endpoint=False)
    return np.stack([x + size * np.cos(2 * np.pi * t), y + size * np.sin(2 * np.pi * t)], -1)


def test_overlap_counts_keypoints_against_threshold():
    # area of a pose = w^2 + h^2 of its extent; threshold 0.1 * sqrt(area)
    a = _square(0, 0, 50)
    b = a.copy()
    b[:6] += 0.5  # 6 keypoints moved by 0.7 px (close), 4 identical: all 10 close
    c = a.copy()
    c[:6] += 30  # only 4 keypoints close
    poses = torch.tensor(np.stack([a, b, c]), dtype=torch.float32)[None]
    valid = torch.ones(1, 3, dtype=torch.bool)
    ov = pose_overlap(poses, valid, thre=0.1, num_thre=5)[0]
    assert ov[0, 1] and ov[1, 0]
    assert not ov[0, 2] and not ov[2, 0]  # 4 close keypoints: not more than 5
    assert pose_overlap(poses, valid, thre=0.1, num_thre=3)[0][0, 2]  # 4 > 3
    assert ov.diagonal().all()


def test_overlap_uses_the_first_pose_area():
    # A is large (one far keypoint): 0.1 * sqrt(100^2 + 4^2) ~ 10 px; B is small: 0.1 * sqrt(32) ~ 0.57 px.
    a = [(0, 0), (4, 0), (0, 4), (100, 0)]
    b = [(3, 0), (7, 0), (3, 4), (3, 2)]  # 3 keypoints 3 px from A's, the 4th far
    poses = torch.tensor([[a, b]], dtype=torch.float32)
    ov = pose_overlap(poses, torch.ones(1, 2, dtype=torch.bool), thre=0.1, num_thre=2)[0]
    assert ov[0, 1]  # 3 keypoints within A's threshold: 3 > 2
    assert not ov[1, 0]  # none within B's


def test_invalid_proposals_never_overlap_or_survive():
    a = _square(0, 0, 50)
    poses = torch.tensor(np.stack([a, a]), dtype=torch.float32)[None]
    valid = torch.tensor([[True, False]])
    keep = pose_nms(poses, torch.tensor([[0.1, 0.9]]), valid, 0.05, 5, 30)
    assert keep[0].tolist() == [0]


def test_greedy_keeps_best_of_group():
    ov = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    assert greedy_group_nms(ov, np.array([0.2, 0.9, 0.5]), np.ones(3, bool)) == [1, 2]


def test_greedy_skips_when_best_already_suppressed():
    # 0 groups {0, 1}: keeps 1. 2 groups {1, 2} (asymmetric overlap) and 1 is best but already
    # suppressed: the official pass keeps nothing for 2 and does not suppress it either, so 3
    # (which only overlaps itself and 2, being better than 2) is still visited.
    ov = np.array([
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 1, 1],
    ], dtype=bool)
    scores = np.array([0.3, 0.9, 0.5, 0.4])
    assert greedy_group_nms(ov, scores, np.ones(4, bool)) == [1, 2]
    # 2 stays unsuppressed after its skipped visit, so 3's group {2, 3} keeps 2


def test_pose_nms_caps_to_max_num_by_heat_score():
    poses = torch.tensor(np.stack([_square(200 * i, 0, 20) for i in range(5)]), dtype=torch.float32)[None]
    heat = torch.tensor([[0.1, 0.5, 0.3, 0.9, 0.2]])
    keep = pose_nms(poses, heat, torch.ones(1, 5, dtype=torch.bool), 0.05, 5, max_num=3)
    assert keep[0].tolist() == [3, 1, 2]
    keep = pose_nms(poses, heat, torch.ones(1, 5, dtype=torch.bool), 0.05, 5, max_num=30)
    assert keep[0].tolist() == [0, 1, 2, 3, 4]  # greedy (proposal) order when not capped


def test_pose_nms_duplicates_across_scales_merge_to_best():
    a = _square(100, 100, 40, k=17)
    poses = torch.tensor(np.stack([a, a + 0.3, _square(400, 100, 40, k=17), a - 0.2]), dtype=torch.float32)[None]
    heat = torch.tensor([[0.5, 0.7, 0.6, 0.4]])
    keep = pose_nms(poses, heat, torch.ones(1, 4, dtype=torch.bool), 0.05, 8, 30)
    assert keep[0].tolist() == [1, 2]


def test_pose_nms_empty():
    keep = pose_nms(torch.zeros(2, 0, 17, 2), torch.zeros(2, 0), torch.zeros(2, 0, dtype=torch.bool), 0.05, 8, 30)
    assert [k.numel() for k in keep] == [0, 0]
