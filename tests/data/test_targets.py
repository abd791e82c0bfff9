"""DEKR targets: vectorised numpy and torch builders against straightforward loop references, and
``official_quirks`` against the official code's own targets and losses on real images
(``tests/fixtures/reference/targets_official_*.npz``, read by ``tests/helpers/official_targets.py``)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from dekr.data.dataset import CocoKeypointDataset
from dekr.data.spec import load_spec
from dekr.data.targets import TargetConfig, build_targets, build_targets_torch
from dekr.losses import LossConfig, dekr_loss
from tests.helpers.official_targets import ARRAYS, FILES, REFERENCE_DIR, checksum, load, predictions


# ---------------------------------------------------------------- references (loops, the recipe's formulas)
def reference_targets(joints, area, mask, r, sigma=2.0, center_sigma=4.0, bg_weight=0.1, radius=4,
                      official=False):
    """Per-pixel loops. ``official``: sigma by index < 17, offsets of :func:`official_offsets_reference`."""
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
    if official:
        offset, offset_weight, _ = official_offsets_reference(joints, area, r, radius)
        return {"heatmap": heatmap, "heatmap_weight": weight, "offset": offset,
                "offset_weight": offset_weight}

    offset = np.zeros((2 * k, r, r))
    offset_weight = np.zeros((2 * k, r, r))
    owner_area = np.full((k, r, r), np.inf)  # per keypoint channel: area of the person written there
    for pid, person in enumerate(joints):
        cx, cy, cv = math.floor(person[-1, 0]), math.floor(person[-1, 1]), person[-1, 2]
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


def official_offsets_reference(joints: np.ndarray, area: np.ndarray, r: int,
                               radius: int = 4) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """HRNet/DEKR ``OffsetGenerator.__call__`` line by line (its pixel double loop as numpy slices of
    the window, which is the same since pixels are independent), plus an account of why it differs
    from the sound rule.

    Along the official run, each write decision at a pixel is compared with the sound rule's decision
    in the same state (per keypoint channel, write iff the channel's last writer is not smaller:
    ``not owner < area``, unwritten = no owner). A disagreement that changes a stored value is
    named by the first quirk, in this chain, that flips the decision:

    * ``centre_trunc``: the person only exists because ``int()`` truncates a centre in (-1, 0);
    * ``shared_area_map``: the official map holds the area of the pixel's last writer over ALL
      keypoints (possibly the person itself, float32), not channel k's owner;
    * ``float32_area``: channel k's owner area rounded to float32 (equal areas: earlier keeps);
    * ``zero_unwritten``: an exact (0, 0) offset reads as unwritten.

    Args:
        joints: (P, K+1, 3) output-map (x, y, v), the centre last.
        area: (P,) float64.
    Returns:
        offset (2K, R, R) float32, offset_weight (2K, R, R) float32, the set of quirk names that acted.
    """
    k = joints.shape[1] - 1
    offset_map = np.zeros((k, 2, r, r), dtype=np.float32)
    weight_map = np.zeros((k, 2, r, r), dtype=np.float32)
    area_map = np.zeros((r, r), dtype=np.float32)
    owner = np.full((k, r, r), np.inf)  # area of channel k's last writer (the sound rule's state)
    acted: set[str] = set()
    for person_id, p in enumerate(joints):
        ct_x, ct_y, ct_v = int(p[-1, 0]), int(p[-1, 1]), int(p[-1, 2])
        if ct_v < 1 or ct_x < 0 or ct_y < 0 or ct_x >= r or ct_y >= r:
            continue
        trunc_only = math.floor(p[-1, 0]) < 0 or math.floor(p[-1, 1]) < 0  # floor would drop it
        a = float(area[person_id])
        ys = slice(max(ct_y - radius, 0), min(ct_y + radius, r))
        xs = slice(max(ct_x - radius, 0), min(ct_x + radius, r))
        pos_y, pos_x = np.mgrid[ys, xs].astype(np.float64)
        for idx, (x, y, v) in enumerate(p[:-1]):
            if not v > 0 or x < 0 or y < 0 or x >= r or y >= r:
                continue
            current = offset_map[idx, :, ys, xs]
            new = np.stack([pos_x - x, pos_y - y]).astype(np.float32)
            new_weight = np.float32(1.0 / np.sqrt(a))
            unwritten = (current[0] == 0) & (current[1] == 0)
            # the official test; numpy compares the float32 map with the float64 area in float64
            write = unwritten | ~(area_map[ys, xs].astype(np.float64) < a)
            changes = (current != new).any(0) | (weight_map[idx, 0, ys, xs] != new_weight)
            own = owner[idx, ys, xs]
            if trunc_only:
                if (write & changes).any():
                    acted.add("centre_trunc")
            else:
                by_channel32 = unwritten | ~(own.astype(np.float32).astype(np.float64) < a)
                by_channel64 = unwritten | ~(own < a)
                sound = ~(own < a)
                pending = (write != sound) & changes  # a disagreement that matters, not yet named
                for name, before, after in (("shared_area_map", write, by_channel32),
                                            ("float32_area", by_channel32, by_channel64),
                                            ("zero_unwritten", by_channel64, sound)):
                    flipped = pending & (before != after)
                    if flipped.any():
                        acted.add(name)
                    pending &= ~flipped
            offset_map[idx, :, ys, xs][:, write] = new[:, write]
            weight_map[idx, :, ys, xs][:, write] = new_weight
            area_map[ys, xs][write] = a
            owner[idx, ys, xs][write] = a
    return offset_map.reshape(2 * k, r, r), weight_map.reshape(2 * k, r, r), acted


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


# ---------------------------------------------------------------- the official code's targets on real images
GROUPS = {"heatmap": ("heatmap", "heatmap_weight"), "offset": ("offset", "offset_weight")}


@pytest.fixture(scope="module")
def official_files() -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]]:
    """Both reference files, loaded once (43 cases, ~300 MB of float32 maps)."""
    return {name: load(REFERENCE_DIR / file) for name, file in FILES.items()}


def _config(meta: dict[str, Any], official: bool) -> TargetConfig:
    return TargetConfig(sigma=meta["sigma"], center_sigma=meta["center_sigma"], bg_weight=meta["bg_weight"],
                        offset_radius=meta["offset_radius"], official_quirks=official)


def _max_error(got: dict[str, Any], want: dict[str, np.ndarray], keys=ARRAYS) -> float:
    return max(float(np.abs(np.asarray(got[key], dtype=np.float64) - want[key]).max()) for key in keys)


def _batches_by_size(cases: list[dict[str, Any]]) -> dict[int, list[int]]:
    sizes: dict[int, list[int]] = {}
    for i, case in enumerate(cases):
        sizes.setdefault(case["output_size"], []).append(i)
    return sizes


@pytest.mark.parametrize("name", list(FILES))
def test_official_quirks_reproduce_the_official_targets(official_files, name):
    """(a) Every case, numpy and torch (padded batches per output size, CPU and CUDA if present)."""
    cases, _, meta = official_files[name]
    cfg = _config(meta, official=True)
    for i, case in enumerate(cases):
        got = build_targets(case["joints"], case["area"], case["mask"], case["output_size"], cfg)
        assert _max_error(got, case["ref"]) <= 1e-5, (name, i, case["tag"])
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for r, indices in _batches_by_size(cases).items():
        joints, area, masks = _batch([(cases[i]["joints"], cases[i]["area"], cases[i]["mask"])
                                      for i in indices])
        for device in devices:
            got = build_targets_torch(joints.to(device), area.to(device), masks.to(device), r, cfg)
            for b, i in enumerate(indices):
                one = {key: value[b].cpu().numpy() for key, value in got.items()}
                assert _max_error(one, cases[i]["ref"]) <= 1e-5, (name, device, i, cases[i]["tag"])


def _sigma_quirk_acts(joints: np.ndarray, r: int, meta: dict[str, Any]) -> bool:
    """Whether some drawn point sits on a channel whose sigma the ``index < 17`` rule changes."""
    k = joints.shape[1] - 1
    changed = _config(meta, True).channel_sigmas(k) != _config(meta, False).channel_sigmas(k)
    x, y, v = joints[..., 0], joints[..., 1], joints[..., 2]
    drawn = (v > 0) & (x >= 0) & (y >= 0) & (x < r) & (y < r)
    return bool(drawn[:, changed].any())


def test_sound_targets_differ_from_official_exactly_where_a_quirk_acts(official_files):
    """(b) Per case, which quirks act is derived from the data: ``sigma_index`` when a drawn point lies
    on a channel whose sigma the index rule changes (heatmaps), and the offset quirks named by
    :func:`official_offsets_reference` along the official run. The sound builder must differ from the
    official targets in exactly the groups (heatmap, offset) those quirks predict, case by case."""
    rows, mismatched, acted_anywhere = [], [], set()
    for name, (cases, _, meta) in official_files.items():
        for i, case in enumerate(cases):
            r = case["output_size"]
            offset, offset_weight, acted = official_offsets_reference(case["joints"], case["area"], r,
                                                                      meta["offset_radius"])
            # the port is the official generator: it must give the file's offsets bit for bit
            assert np.array_equal(offset, case["ref"]["offset"]), (name, i)
            assert np.array_equal(offset_weight, case["ref"]["offset_weight"]), (name, i)
            if _sigma_quirk_acts(case["joints"], r, meta):
                acted.add("sigma_index")
            predicted = ({"heatmap"} if "sigma_index" in acted else set()) | (
                {"offset"} if acted - {"sigma_index"} else set())
            sound = build_targets(case["joints"], case["area"], case["mask"], r, _config(meta, False))
            observed = {group for group, keys in GROUPS.items()
                        if _max_error(sound, case["ref"], keys) > 1e-5}
            rows.append(f"{name} {i:2d} {case['tag']:<16} quirks={sorted(acted)} differs={sorted(observed)}")
            if observed != predicted:
                mismatched.append(rows[-1] + f" predicted={sorted(predicted)}")
            if case["tag"] == "edge:centre_neg":  # made to put a centre in (-1, 0)
                assert "centre_trunc" in acted, rows[-1]
            acted_anywhere |= acted
    table = "\n".join(rows)
    assert not mismatched, "\n".join(mismatched) + "\n\n" + table
    # the fixtures exercise every quirk that acts on real data (the (0, 0) one: crafted test below)
    assert {"sigma_index", "centre_trunc", "shared_area_map", "float32_area"} <= acted_anywhere, table


@pytest.mark.parametrize("name", list(FILES))
def test_loss_on_official_targets_equals_the_official_loss(official_files, name):
    """(c) Our targets (torch builder, official quirks) and ``dekr_loss`` on the seeded predictions."""
    cases, batches, meta = official_files[name]
    cfg = LossConfig(heatmap_factor=meta["loss_factors"][0], offset_factor=meta["loss_factors"][1])
    for b, batch in enumerate(batches):
        members = [cases[i] for i in batch["cases"]]
        r = members[0]["output_size"]
        joints, area, masks = _batch([(c["joints"], c["area"], c["mask"]) for c in members])
        targets = build_targets_torch(joints, area, masks, r, _config(meta, official=True))
        refs = {key: np.stack([c["ref"][key] for c in members]) for key in ARRAYS}
        for pred_set in (0, 1):
            heatmaps, offsets = predictions(meta, b, pred_set, refs)
            assert checksum(heatmaps) == pytest.approx(batch["checksum"][pred_set][0], rel=1e-12)
            assert checksum(offsets) == pytest.approx(batch["checksum"][pred_set][1], rel=1e-12)
            loss = dekr_loss(torch.from_numpy(heatmaps), torch.from_numpy(offsets), targets, cfg)
            want_heatmap, want_offset = (float(v) for v in batch["loss"][pred_set])
            assert float(loss["heatmap_loss"]) == pytest.approx(want_heatmap, rel=1e-5), (b, pred_set)
            assert float(loss["offset_loss"]) == pytest.approx(want_offset, rel=1e-5), (b, pred_set)
            assert float(loss["loss"]) == pytest.approx(want_heatmap + want_offset, rel=1e-5)


def _both_builders(joints: np.ndarray, area: np.ndarray, r: int,
                   official: bool) -> list[dict[str, np.ndarray]]:
    """[numpy targets, torch targets (batch of one)] of one sample, no mask."""
    cfg = TargetConfig(official_quirks=official)
    t = build_targets_torch(torch.from_numpy(joints)[None], torch.from_numpy(area)[None], None, r, cfg)
    return [build_targets(joints, area, None, r, cfg), {key: value[0].numpy() for key, value in t.items()}]


def test_official_exact_zero_offset_counts_as_unwritten():
    """Person 0 (small) has keypoint 0 exactly on pixel (9, 9): its stored offset there is (0, 0), which
    the official test reads as unwritten, so the later, larger person 1 takes that one pixel."""
    r = 32
    joints = np.zeros((2, 18, 3))
    joints[0, 0], joints[0, 17] = (9.0, 9.0, 2), (10.5, 10.5, 1)  # window [6, 14)^2
    joints[1, 0], joints[1, 17] = (20.3, 15.7, 1), (11.2, 11.3, 1)  # window [7, 15)^2
    area = np.array([100.0, 400.0])
    _, _, acted = official_offsets_reference(joints, area, r)
    assert acted == {"zero_unwritten"}
    for t in _both_builders(joints, area, r, official=True):
        assert (t["offset"][0, 9, 9], t["offset"][1, 9, 9]) == (np.float32(9 - 20.3), np.float32(9 - 15.7))
        assert t["offset_weight"][0, 9, 9] == np.float32(1 / 20)
        assert (t["offset"][0, 10, 10], t["offset_weight"][0, 10, 10]) == (1.0, np.float32(1 / 10))  # 0 keeps
    for t in _both_builders(joints, area, r, official=False):
        assert (t["offset"][0, 9, 9], t["offset"][1, 9, 9]) == (0, 0)
        assert t["offset_weight"][0, 9, 9] == np.float32(1 / 10)


def test_official_shared_float32_area_map_keeps_the_first_keypoint_only():
    """A smaller person after a larger one wins pixel (12, 12) for its first keypoint; the shared map
    then holds float32(its area). If float32 rounds the area down, ``map < area`` and the later
    keypoints stay with the larger person; if it rounds up, it takes them too."""
    r = 32
    joints = np.zeros((2, 18, 3))
    joints[0, [0, 1, 17]] = (5.0, 6.0, 1), (15.0, 14.0, 1), (10.5, 10.5, 1)  # large, first: window [6, 14)^2
    joints[1, [0, 1, 17]] = (12.3, 9.1, 1), (8.2, 13.4, 1), (11.5, 11.5, 1)  # small, later: window [7, 15)^2
    down, up = 100.1, 100.3
    assert float(np.float32(down)) < down and float(np.float32(up)) > up  # (numpy would compare in float32)
    for small, keeps in ((down, False), (up, True)):
        area = np.array([900.0, small])
        _, _, acted = official_offsets_reference(joints, area, r)
        assert acted == (set() if keeps else {"shared_area_map"})
        for t in _both_builders(joints, area, r, official=True):
            assert t["offset"][0, 12, 12] == np.float32(12 - 12.3)  # keypoint 0: the smaller person
            assert t["offset"][2, 12, 12] == np.float32(12 - (8.2 if keeps else 15.0))  # keypoint 1
        for t in _both_builders(joints, area, r, official=False):
            assert t["offset"][2, 12, 12] == np.float32(12 - 8.2)  # sound: the smaller person, always
