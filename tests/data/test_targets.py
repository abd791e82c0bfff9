"""DEKR targets: vectorised numpy and torch builders against a straightforward per-pixel reference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dekr.data.dataset import CocoKeypointDataset
from dekr.data.spec import load_spec
from dekr.data.targets import TargetConfig, build_targets, build_targets_torch


# ---------------------------------------------------------------- reference (loops, the recipe's formulas)
def reference_targets(joints, area, mask, r, sigma=2.0, center_sigma=4.0, bg_weight=0.1, radius=4,
                      official=False):
    p, k1, _ = joints.shape
    k = k1 - 1
    heatmap = np.zeros((k1, r, r))
    drawn = np.zeros((k1, r, r), dtype=bool)
    for person in joints:
        for idx, (x, y, v) in enumerate(person):
            if official:
                s = sigma if idx < 17 else center_sigma
            else:
                s = center_sigma if idx == k else sigma
            if v <= 0 or x < 0 or y < 0 or x >= r or y >= r:
                continue
            x0, y0 = math.floor(x - 3 * s - 1), math.floor(y - 3 * s - 1)
            x1, y1 = math.ceil(x + 3 * s + 2), math.ceil(y + 3 * s + 2)
            for py in range(max(0, y0), min(y1, r)):
                for px in range(max(0, x0), min(x1, r)):
                    g = math.exp(-((px - x) ** 2 + (py - y) ** 2) / (2 * s * s))
                    heatmap[idx, py, px] = max(heatmap[idx, py, px], g)
                    drawn[idx, py, px] = True
    weight = np.where(drawn, 1.0, bg_weight) * (mask[None] if mask is not None else 1.0)

    offset = np.zeros((2 * k, r, r))
    offset_weight = np.zeros((2 * k, r, r))
    owner_area = np.full((k, r, r), np.inf)  # per keypoint channel: area of the person written there
    for pid, person in enumerate(joints):
        cxf, cyf, cv = person[-1]
        cx = int(cxf) if official else math.floor(cxf)
        cy = int(cyf) if official else math.floor(cyf)
        if cv <= 0 or cx < 0 or cy < 0 or cx >= r or cy >= r:
            continue
        for idx in range(k):
            x, y, v = person[idx]
            if v <= 0 or x < 0 or y < 0 or x >= r or y >= r:
                continue
            for py in range(max(cy - radius, 0), min(cy + radius, r)):
                for px in range(max(cx - radius, 0), min(cx + radius, r)):
                    if owner_area[idx, py, px] < area[pid]:
                        continue  # a smaller person already owns this pixel (equal: the later wins)
                    owner_area[idx, py, px] = area[pid]
                    offset[2 * idx, py, px] = px - x
                    offset[2 * idx + 1, py, px] = py - y
                    offset_weight[2 * idx:2 * idx + 2, py, px] = 1.0 / math.sqrt(area[pid])
    return {"heatmap": heatmap, "heatmap_weight": weight, "offset": offset, "offset_weight": offset_weight}


def _compare(got, want, atol=1e-6):
    for key in want:
        g = got[key].numpy() if isinstance(got[key], torch.Tensor) else got[key]
        assert g.shape == want[key].shape, key
        assert g.dtype == np.float32, key
        # targets are float32 maps: compare with the float64 reference rounded to float32
        np.testing.assert_allclose(g, np.asarray(want[key]).astype(np.float32), atol=atol, rtol=0, err_msg=key)


def _samples(fixtures_dir, name, official, count=6, output_size=128):
    """Warped real annotations: (joints, area, mask) of a few augmented training samples."""
    if name == "coco":
        root = fixtures_dir / "coco_minicoco"
        ann, img, spec = root / "annotations/person_keypoints_train2017.json", root / "images/train2017", "coco"
    else:
        root = fixtures_dir / "crowdpose"
        ann, img, spec = root / "test_crowdpose.json", root, "crowdpose"
    ds = CocoKeypointDataset(ann, img, load_spec(spec), train=True, input_size=output_size * 4,
                             official_quirks=official, gpu_targets=True)
    out = []
    for i in range(min(count, len(ds))):
        ds.reseed(100 + i)
        s = ds[i]
        out.append((s["joints"].numpy(), s["area"].numpy(), s["mask"].numpy()))
    return ds, out


@pytest.mark.parametrize("name", ["coco", "crowdpose"])
@pytest.mark.parametrize("official", [False, True])
def test_numpy_targets_match_reference_on_real_annotations(fixtures_dir, name, official):
    _, samples = _samples(fixtures_dir, name, official)
    cfg = TargetConfig(official_quirks=official)
    persons = 0
    for joints, area, mask in samples:
        persons += len(joints)
        got = build_targets(joints, area, mask, 128, cfg)
        want = reference_targets(joints, area, mask, 128, official=official)
        _compare(got, want)
    assert persons > 0


def test_reference_parity_with_overlaps_and_edges():
    """Crafted: overlapping persons of equal and different areas, points on and off the map edges."""
    rng = np.random.default_rng(0)
    r, k = 32, 17
    joints = np.zeros((6, k + 1, 3))
    centers = [(10.2, 10.7), (12.9, 11.1), (11.0, 10.0), (0.3, 31.6), (-0.5, 5.0), (31.9, 0.0)]
    for p, (cx, cy) in enumerate(centers):
        joints[p, :k, 0] = cx + rng.normal(0, 6, k)
        joints[p, :k, 1] = cy + rng.normal(0, 6, k)
        joints[p, :k, 2] = rng.integers(0, 3, k)
        joints[p, k] = (cx, cy, 1)
    area = np.array([400.0, 100.0, 100.0, 50.0, 30.0, 900.0])
    mask = (rng.random((r, r)) > 0.2).astype(np.uint8)
    for official in (False, True):
        got = build_targets(joints, area, mask, r, TargetConfig(official_quirks=official))
        _compare(got, reference_targets(joints, area, mask, r, official=official))


def test_semantics_spot_checks():
    r = 64
    joints = np.zeros((2, 18, 3))
    joints[0, 0] = (20.0, 20.0, 2)
    joints[0, 17] = (22.5, 21.5, 1)
    joints[1, 0] = (25.0, 24.0, 1)
    joints[1, 17] = (23.0, 22.0, 1)
    area = np.array([400.0, 100.0])
    t = build_targets(joints, area, None, r)
    assert t["heatmap"][0, 20, 20] == pytest.approx(1.0)
    assert t["heatmap"][17, 21, 22] == pytest.approx(math.exp(-(0.25 + 0.25) / 32))
    assert t["heatmap_weight"][0, 0, 0] == pytest.approx(0.1)
    assert t["heatmap_weight"][0, 20, 20] == 1.0
    # pixel (23, 22) is in both centre windows: the smaller person (1) wins, offset = pixel - keypoint
    assert t["offset"][0, 22, 23] == pytest.approx(23 - 25.0)
    assert t["offset"][1, 22, 23] == pytest.approx(22 - 24.0)
    assert t["offset_weight"][0, 22, 23] == pytest.approx(1 / 10)
    # only person 0's window: [18, 26) x [17, 25) around floor(22.5), floor(21.5)
    assert t["offset"][0, 17, 18] == pytest.approx(18 - 20.0)
    assert t["offset_weight"][0, 17, 18] == pytest.approx(1 / 20)
    assert t["offset_weight"][2:].sum() == 0  # unlabelled keypoints get no offsets


def test_crowdpose_center_sigma_quirk():
    joints = np.zeros((1, 15, 3))
    joints[0, 14] = (20.0, 20.0, 1)
    sound = build_targets(joints, np.ones(1), None, 64, TargetConfig())
    quirk = build_targets(joints, np.ones(1), None, 64, TargetConfig(official_quirks=True))
    assert sound["heatmap"][14, 20, 24] == pytest.approx(math.exp(-16 / 32))  # sigma 4
    assert quirk["heatmap"][14, 20, 24] == pytest.approx(math.exp(-16 / 8))  # sigma 2 (index 14 < 17)


def test_empty_persons():
    t = build_targets(np.zeros((0, 18, 3)), np.zeros(0), None, 16)
    assert t["heatmap"].sum() == 0 and np.all(t["heatmap_weight"] == np.float32(0.1))
    tt = build_targets_torch(torch.zeros(2, 0, 18, 3), torch.zeros(2, 0), None, 16)
    assert tt["heatmap"].shape == (2, 18, 16, 16) and tt["offset"].shape == (2, 34, 16, 16)


def _batch(samples):
    p = max(len(j) for j, _, _ in samples)
    k1 = samples[0][0].shape[1]
    joints = torch.zeros(len(samples), p, k1, 3, dtype=torch.float64)
    area = torch.ones(len(samples), p, dtype=torch.float64)
    masks = torch.stack([torch.from_numpy(m) for _, _, m in samples])
    for i, (j, a, _) in enumerate(samples):
        joints[i, : len(j)] = torch.from_numpy(j)
        area[i, : len(a)] = torch.from_numpy(a)
    return joints, area, masks


@pytest.mark.parametrize("name", ["coco", "crowdpose"])
@pytest.mark.parametrize("official", [False, True])
def test_torch_targets_equal_numpy(fixtures_dir, name, official):
    _, samples = _samples(fixtures_dir, name, official, count=8)
    cfg = TargetConfig(official_quirks=official)
    joints, area, masks = _batch(samples)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        got = build_targets_torch(joints.to(device), area.to(device), masks.to(device), 128, cfg)
        for i, (j, a, m) in enumerate(samples):
            want = build_targets(j, a, m, 128, cfg)
            _compare({key: v[i].cpu() for key, v in got.items()}, want)


def test_torch_targets_non_contiguous_and_float32():
    rng = np.random.default_rng(1)
    joints = np.zeros((3, 18, 3))
    joints[..., :2] = rng.uniform(-5, 40, (3, 18, 2))
    joints[..., 2] = rng.integers(0, 3, (3, 18))
    area = np.array([300.0, 200.0, 300.0])
    want = build_targets(joints, area, None, 32)
    big = torch.zeros(1, 3, 18, 6, dtype=torch.float64)
    big[..., ::2] = torch.from_numpy(joints)
    got = build_targets_torch(big[..., ::2], torch.from_numpy(area)[None], None, 32)
    _compare({k: v[0] for k, v in got.items()}, want)
