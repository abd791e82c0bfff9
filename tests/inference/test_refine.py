"""MATCH_HMP Gaussian-fit refinement: sub-pixel accuracy, scipy parity, failures, borders, batching."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dekr.inference import DecodeConfig
from dekr.inference.refine import fit_gaussians, gather_windows, gaussian_refine

H, W = 48, 64


def gaussian_map(centres, sigma=8.0, amps=None, h=H, w=W) -> torch.Tensor:
    """(h, w) max of Gaussians at (x, y) centres."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    out = torch.zeros(h, w, dtype=torch.float64)
    for i, (cx, cy) in enumerate(centres):
        a = 1.0 if amps is None else amps[i]
        out = torch.maximum(out, a * torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2)))
    return out


def refine_one(heatmap: torch.Tensor, x: float, y: float, score: float = 1.0, **kwargs) -> torch.Tensor:
    poses = torch.tensor([[[x, y]]], dtype=torch.float32)
    return gaussian_refine(poses, torch.tensor([[score]]), heatmap[None].float(), **kwargs)[0, 0]


@pytest.mark.parametrize("sigma", [2.0, 8.0])
@pytest.mark.parametrize("start", [(21.5, 30.2), (18.6, 33.1), (20.0, 32.0)])
def test_subpixel_centre_recovered(sigma, start):
    hm = gaussian_map([(20.3, 31.7)], sigma)
    out = refine_one(hm, *start)
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([20.3, 31.7]), atol=0.05), out
    assert (out - torch.tensor([20.3, 31.7])).abs().max() < 1e-3  # noiseless: essentially exact


def _scipy_fit(window: np.ndarray, rows: np.ndarray, cols: np.ndarray, init):
    """The official fit (curve_fit, LM, maxfev 300) with correctly paired cell coordinates."""
    optimize = pytest.importorskip("scipy.optimize")

    def model(data, amp, r0, c0, s):
        r, c = data
        return amp * np.exp(-((c - c0) ** 2 + (r - r0) ** 2) / (2 * s ** 2))

    try:
        popt, _ = optimize.curve_fit(model, np.vstack((rows, cols)), window, p0=init, maxfev=300)
    except RuntimeError:
        return None
    return popt


def test_parity_with_scipy_curve_fit_on_noisy_windows():
    pytest.importorskip("scipy")
    rng = np.random.default_rng(0)
    k = 12
    maps, poses = [], []
    for _ in range(k):
        cx, cy = rng.uniform(8, W - 8), rng.uniform(8, H - 8)
        hm = gaussian_map([(cx, cy)], sigma=rng.uniform(2.0, 9.0), amps=[rng.uniform(0.2, 1.0)])
        hm = hm + torch.from_numpy(rng.normal(0, 0.05, hm.shape))
        maps.append(hm)
        poses.append((cx + rng.uniform(-1.5, 1.5), cy + rng.uniform(-1.5, 1.5)))
    heatmaps = torch.stack(maps).float()  # one keypoint channel per window
    xy = torch.tensor(poses, dtype=torch.float32)[None]  # (1, K, 2)
    out = gaussian_refine(xy, torch.ones(1, k), heatmaps, kernel=6, sigma=2.0)[0]
    hm_np = heatmaps.double().numpy()
    compared = 0
    for j, (x, y) in enumerate(poses):
        col, row = int(x + 0.5), int(y + 0.5)
        r_lo, r_hi, c_lo, c_hi = max(row - 6, 0), min(row + 6, H - 1), max(col - 6, 0), min(col + 6, W - 1)
        rows, cols = np.mgrid[r_lo:r_hi + 1, c_lo:c_hi + 1]
        popt = _scipy_fit(hm_np[j, r_lo:r_hi + 1, c_lo:c_hi + 1].ravel(), rows.ravel().astype(float),
                          cols.ravel().astype(float), (hm_np[j, row, col], row, col, 2.0))
        if popt is None:
            continue
        expected = torch.tensor([popt[2], popt[1]], dtype=torch.float32)
        assert (out[j] - expected).abs().max() < 1e-3, (j, out[j], expected)
        compared += 1
    assert compared >= k - 1


def test_fit_gaussians_matches_scipy_parameters():
    pytest.importorskip("scipy")
    rng = np.random.default_rng(1)
    offsets = np.arange(-6, 7, dtype=float)
    rows, cols = (g.ravel() for g in np.meshgrid(offsets, offsets, indexing="ij"))
    windows, refs = [], []
    for _ in range(40):
        amp, r0, c0, s = rng.uniform(0.1, 1), *rng.uniform(-1.5, 1.5, 2), rng.uniform(1.5, 9)
        v = amp * np.exp(-((cols - c0) ** 2 + (rows - r0) ** 2) / (2 * s ** 2)) + rng.normal(0, 0.1 * amp, rows.size)
        windows.append(v.reshape(13, 13))
        refs.append(_scipy_fit(v, rows, cols, (v[rows.size // 2], 0.0, 0.0, 2.0)))
    values = torch.tensor(np.array(windows))
    init = torch.stack((values[:, 6, 6], torch.zeros(40, dtype=torch.float64),
                        torch.zeros(40, dtype=torch.float64), torch.full((40,), 2.0, dtype=torch.float64)), -1)
    mask = torch.ones(40, 13, dtype=torch.bool)
    params, ok = fit_gaussians(values, mask, mask, torch.tensor(offsets), torch.tensor(offsets), init)
    assert ok.all()
    for p, ref in zip(params, refs):
        assert ref is not None
        assert np.abs(p[1:3].numpy() - ref[1:3]).max() < 1e-3
        assert abs(p[0].item() - ref[0]) < 1e-3 and abs(abs(p[3].item()) - abs(ref[3])) < 1e-2


@pytest.mark.parametrize("kind", ["zero", "flat", "slope", "below-threshold"])
def test_failed_or_skipped_fits_leave_keypoint_unchanged(kind):
    xs = torch.arange(W, dtype=torch.float64)[None].expand(H, W)
    hm = {"zero": torch.zeros(H, W, dtype=torch.float64), "flat": torch.full((H, W), 0.3, dtype=torch.float64),
          "slope": 0.01 * xs, "below-threshold": gaussian_map([(20.3, 31.7)])}[kind]
    score = 0.04 if kind == "below-threshold" else 0.9
    out = refine_one(hm, 21.4, 30.2, score=score, threshold=0.05)
    assert torch.equal(out, torch.tensor([21.4, 30.2]))


def test_nan_heatmap_leaves_keypoint_unchanged():
    hm = gaussian_map([(20.3, 31.7)])
    hm[30, 21] = float("nan")
    assert torch.equal(refine_one(hm, 21.4, 30.2), torch.tensor([21.4, 30.2]))


@pytest.mark.parametrize("centre, start", [
    ((1.3, 2.6), (2.2, 1.4)),  # top-left corner: 9x10 window
    ((62.4, 20.2), (61.0, 21.1)),  # right border: 13x8
    ((30.7, 46.1), (31.6, 47.3)),  # bottom border: 8x13
    ((-0.3, 20.5), (0.0, 21.0)),  # peak just outside the map: fitted from its tail
])
def test_border_windows_fit_correctly(centre, start):
    hm = gaussian_map([centre], sigma=4.0)
    out = refine_one(hm, *start)
    assert torch.allclose(out, torch.tensor(centre, dtype=torch.float32), atol=0.05), out


def test_border_window_gather_is_clipped():
    hm = torch.arange(2 * H * W, dtype=torch.float32).reshape(2, H, W)
    values, row_in, col_in, offsets = gather_windows(hm, torch.tensor([1]), torch.tensor([2]),
                                                     torch.tensor([W - 3]), 6)
    assert values.shape == (1, 13, 13) and torch.equal(offsets, torch.arange(-6, 7))
    assert row_in[0].sum() == 2 + 7 and col_in[0].sum() == 6 + 3  # rows 0..8, cols W-9..W-1
    inside = row_in[0, :, None] & col_in[0, None, :]
    r = (2 + offsets)[:, None].expand(13, 13)[inside]
    c = (W - 3 + offsets)[None, :].expand(13, 13)[inside]
    assert torch.equal(values[0][inside], (H * W + r * W + c).float())
    assert (values[0][~inside] == 0).all()


def test_batch_matches_one_at_a_time():
    rng = np.random.default_rng(3)
    n, p, k = 2, 9, 5
    heatmaps, truth = [], []
    for _ in range(n):
        chans, tr = [], []
        for _ in range(k):
            centres = [(rng.uniform(0, W), rng.uniform(0, H)) for _ in range(p)]
            hm = gaussian_map(centres, sigma=rng.uniform(2, 6), amps=rng.uniform(0.3, 1, p))
            chans.append(hm + torch.from_numpy(rng.normal(0, 0.02, hm.shape)))
            tr.append(centres)
        heatmaps.append(torch.stack(chans + [torch.zeros(H, W, dtype=torch.float64)]))  # + center channel
        truth.append(np.array(tr).transpose(1, 0, 2))  # (P, K, 2)
    heatmaps = torch.stack(heatmaps).float()
    poses = torch.from_numpy(np.concatenate(truth) + rng.uniform(-1.5, 1.5, (n * p, k, 2))).float()
    poses[1] = poses[0]  # two people rounding to the same cells: the same fitted result
    poses[1, :, 0] += 0.2
    scores = torch.from_numpy(rng.uniform(0, 1, (n * p, k))).float()
    image_index = torch.arange(n).repeat_interleave(p)
    batched = gaussian_refine(poses, scores, heatmaps, image_index)
    moved = (batched != poses).any(-1)
    assert moved.float().mean() > 0.5
    for i in range(n * p):
        single = gaussian_refine(poses[i:i + 1], scores[i:i + 1], heatmaps[image_index[i]])
        torch.testing.assert_close(batched[i:i + 1], single, atol=1e-5, rtol=0)  # bit-equal on CPU
    same_cell = (torch.floor(poses[0] + 0.5) == torch.floor(poses[1] + 0.5)).all(-1) & (scores[:2] > 0.05).all(0)
    assert same_cell.any()
    assert torch.equal(batched[0][same_cell], batched[1][same_cell])
    with pytest.raises(ValueError, match="image_index"):
        gaussian_refine(poses, scores, heatmaps)


def test_empty_and_nothing_selected():
    hm = gaussian_map([(20.3, 31.7)])[None].float()
    empty = torch.zeros(0, 1, 2)
    assert gaussian_refine(empty, torch.zeros(0, 1), hm).shape == (0, 1, 2)
    poses = torch.tensor([[[21.4, 30.2]]])
    assert torch.equal(gaussian_refine(poses, torch.zeros(1, 1), hm), poses)


def test_config_fields():
    cfg = DecodeConfig.for_dataset("coco")
    assert (cfg.adjust_kernel, cfg.adjust_threshold, cfg.adjust_sigma) == (6, 0.05, 2.0)
    assert not cfg.match_heatmap
    with pytest.raises(ValueError, match="adjust_kernel"):
        DecodeConfig(adjust_kernel=-1)
