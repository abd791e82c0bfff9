"""Augmentation: keypoints follow the image content, flips swap left/right, masks stay aligned."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dekr.data.dataset import CocoKeypointDataset, read_image_rgb
from dekr.data.spec import load_spec
from dekr.data.targets import TargetConfig, build_targets
from dekr.data.transforms import AffineParams, AugmentationConfig, DEKRAffineTransform, build_pixel_transforms

S, R = 512, 128


@pytest.fixture(scope="module")
def coco_train(fixtures_dir):
    root = fixtures_dir / "coco_minicoco"
    return CocoKeypointDataset(root / "annotations/person_keypoints_train2017.json", root / "images/train2017",
                               load_spec("coco"), train=True, gpu_targets=True)


def _params_list(transform, h, w):
    rng = np.random.default_rng(7)
    params = [transform.sample_params(h, w, rng) for _ in range(6)]
    # force both flip states and an extreme rotation / zoom
    params.append(AffineParams(params[0].center, params[0].scale_px, 30.0, True))
    params.append(AffineParams(params[1].center, min(h, w) * 0.75, -30.0, False))
    return params


def _indices_with_keypoints(ds, count=3):
    labelled = [int((ds.persons(i)[0][:, :-1, 2] > 0).sum()) for i in range(len(ds))]
    return [int(i) for i in np.argsort(labelled)[::-1][:count]]


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_keypoints_land_on_the_same_content(coco_train, rank):
    """Mark each labelled keypoint with a disc in a blank image, warp it: the warped keypoint is in the disc."""
    index = _indices_with_keypoints(coco_train)[rank]
    spec = coco_train.spec
    t = coco_train.transform
    joints, _ = coco_train.persons(index)
    h, w = (int(v) for v in coco_train.sizes[index])
    checked = 0
    for params in _params_list(t, h, w):
        out = t(np.zeros((h, w, 3), np.uint8), None, joints, params=params)
        flip_index = spec.flip_index + [spec.num_keypoints]
        for p in range(len(joints)):
            for k in range(spec.num_keypoints):
                x, y, v = out["keypoints"][p, k]
                if v <= 0:
                    continue
                src = flip_index[k] if params.flip else k  # the original keypoint now labelled k
                marked = np.zeros((h, w, 3), np.uint8)
                centre = (int(round(joints[p, src, 0] * 16)), int(round(joints[p, src, 1] * 16)))
                cv2.circle(marked, centre, 6 * 16, (255, 255, 255), -1, shift=4)  # sub-pixel centre
                warped = t(marked, None, None, params=params)["image"]
                xi, yi = x * S / R, y * S / R  # output-map -> input coordinates
                assert warped[int(round(yi)), int(round(xi)), 0] > 128, (params, p, k)
                # the disc's centroid is the keypoint (up to the disc's rasterisation)
                ys, xs = np.nonzero(warped[..., 0] > 128)
                sx, sy = joints[p, src, :2]
                unclipped = 7 <= sx < w - 7 and 7 <= sy < h - 7  # the whole disc in the source image ...
                unclipped &= xs.min() > 0 and ys.min() > 0 and xs.max() < S - 1 and ys.max() < S - 1  # ... and output
                if unclipped:
                    assert abs(xs.mean() - xi) < 1.0 and abs(ys.mean() - yi) < 1.0
                checked += 1
    assert checked > 20


def test_flip_swaps_left_and_right(coco_train):
    spec = coco_train.spec
    t = coco_train.transform
    index = _indices_with_keypoints(coco_train)[0]
    joints, _ = coco_train.persons(index)
    h, w = (int(v) for v in coco_train.sizes[index])
    base = AffineParams((w / 2, h / 2), float(min(h, w)), 0.0, False)
    flipped = AffineParams(base.center, base.scale_px, 0.0, True)
    a = t(np.zeros((h, w, 3), np.uint8), None, joints, params=base)["keypoints"]
    b = t(np.zeros((h, w, 3), np.uint8), None, joints, params=flipped)["keypoints"]
    left, right = spec.keypoint_names.index("left_shoulder"), spec.keypoint_names.index("right_shoulder")
    visible = (joints[:, left, 2] > 0) & (joints[:, right, 2] > 0)
    assert visible.any()
    # a person's left shoulder is on the image right when facing the camera: after the flip the
    # label "left_shoulder" goes to the mirror image of the original right shoulder
    m_out = t.matrices(base, w)[1]
    for p in np.nonzero(visible)[0]:
        mirrored_right = m_out[:2, :2] @ np.array([w - 1 - joints[p, right, 0], joints[p, right, 1]]) + m_out[:2, 2]
        np.testing.assert_allclose(b[p, left, :2], mirrored_right, atol=1e-9)
    # the centre stays last; flipping twice is the identity for labels
    assert t.flip_index[-1] == spec.num_keypoints
    assert list(t.flip_index[t.flip_index]) == list(range(spec.num_keypoints + 1))
    assert not np.allclose(a[..., :2], b[..., :2])


def test_official_flip_quirk_is_three_input_pixels_off(coco_train):
    index = _indices_with_keypoints(coco_train)[0]
    joints, _ = coco_train.persons(index)
    h, w = (int(v) for v in coco_train.sizes[index])
    sound = DEKRAffineTransform(S, R, coco_train.spec.flip_index, AugmentationConfig())
    quirk = DEKRAffineTransform(S, R, coco_train.spec.flip_index, AugmentationConfig(), official_flip=True)
    base = AffineParams((w / 2, h / 2), float(min(h, w)), 0.0, False)
    flip = AffineParams(base.center, base.scale_px, 0.0, True)
    a = sound(np.zeros((h, w, 3), np.uint8), None, joints, params=base)["keypoints"]
    q = quirk(np.zeros((h, w, 3), np.uint8), None, joints, params=flip)["keypoints"]
    k = coco_train.spec.flip_index + [coco_train.spec.num_keypoints]
    # official: keypoints x -> R - 1 - x at the output size, after the warp
    np.testing.assert_allclose(q[..., 0][q[..., 2] > 0], (R - 1 - a[:, k, 0])[q[..., 2] > 0])


def test_mask_stays_aligned_with_keypoint_geometry(fixtures_dir, coco_train):
    """The warped ignore mask uses the keypoints' geometry (flip and rotation included)."""
    root = fixtures_dir / "coco_minicoco"
    ds = CocoKeypointDataset(root / "annotations/person_keypoints_train2017.json", root / "images/train2017",
                             load_spec("coco"), train=True)
    # 1. the crowd RLE of train image 34246: warped mask == the region sampled through the inverse matrix
    index = int(np.nonzero(ds.image_ids == 34246)[0][0])
    keep = ds.keep_mask(index)
    assert keep.min() == 0 and keep.max() == 1
    h, w = keep.shape
    grid = np.stack(np.meshgrid(np.arange(R), np.arange(R)), -1).reshape(-1, 2).astype(float)
    for params in _params_list(ds.transform, h, w):
        out = ds.transform(np.zeros((h, w, 3), np.uint8), keep, np.zeros((0, 18, 3)), params=params)
        inv = np.linalg.inv(out["matrix_output"])
        src = np.round(grid @ inv[:2, :2].T + inv[:2, 2]).astype(int)
        ok = (src[:, 0] >= 0) & (src[:, 1] >= 0) & (src[:, 0] < w) & (src[:, 1] < h)
        expected = np.zeros(R * R, bool)
        expected[ok] = keep[src[ok, 1], src[ok, 0]] == 0
        got = (out["mask"] == 0).reshape(-1) & ok
        union = (got | expected).sum()
        if union > 10:
            assert (got & expected).sum() / union > 0.8, params
    # 2. ignore discs drawn around keypoints: each warped keypoint falls in a warped ignore disc
    index = _indices_with_keypoints(coco_train)[0]
    joints, _ = coco_train.persons(index)
    h, w = (int(v) for v in coco_train.sizes[index])
    keep = np.ones((h, w), np.uint8)
    for x, y, v in joints[:, :-1].reshape(-1, 3):
        if v > 0:
            cv2.circle(keep, (int(round(x * 16)), int(round(y * 16))), 12 * 16, 0, -1, shift=4)
    checked = 0
    for params in _params_list(coco_train.transform, h, w):
        out = coco_train.transform(np.zeros((h, w, 3), np.uint8), keep, joints, params=params)
        for x, y, v in out["keypoints"][:, :-1].reshape(-1, 3):
            if v > 0:
                assert out["mask"][min(int(round(y)), R - 1), min(int(round(x)), R - 1)] == 0
                checked += 1
    assert checked > 20


def test_warped_image_content_matches_matrix(fixtures_dir):
    image = read_image_rgb(fixtures_dir / "coco/000000000785.jpg")
    h, w = image.shape[:2]
    t = DEKRAffineTransform(S, R, load_spec("coco").flip_index)
    params = AffineParams((w / 2 + 10, h / 2 - 5), 400.0, 17.0, True)
    out = t(image, None, None, params=params)
    m_in = out["matrix_input"]
    inv = np.linalg.inv(m_in)
    rng = np.random.default_rng(0)
    for _ in range(50):
        xo, yo = rng.integers(10, S - 10, 2)
        xs, ys = inv[:2, :2] @ np.array([xo, yo]) + inv[:2, 2]
        if 1 <= xs < w - 2 and 1 <= ys < h - 2:
            src = image[int(round(ys)), int(round(xs))].astype(float)
            # bilinear interpolation at a non-integer point: compare with a small tolerance band
            np.testing.assert_allclose(out["image"][yo, xo], src, atol=60)


def test_points_leaving_the_frame_become_unlabelled():
    t = DEKRAffineTransform(64, 16, [])
    joints = np.array([[[5.0, 5.0, 2.0], [1000.0, 5.0, 2.0], [-3.0, 2.0, 1.0]]])[:, :, :]
    t2 = DEKRAffineTransform(64, 16, [0, 1])
    out = t2(np.zeros((64, 64, 3), np.uint8), None, joints, params=AffineParams((32.0, 32.0), 64.0, 0.0, False))
    kp = out["keypoints"][0]
    assert kp[0, 2] == 2 and kp[1, 2] == 0 and kp[2, 2] == 0
    assert t.flip_index.tolist() == [0]


def test_official_visibility_keeps_a_centre_in_minus_one_zero(fixtures_dir):
    """A centre the warp itself puts at x = -0.4: the official code never changes v and its offset
    generator truncates with int() (-0.4 -> 0), so the person keeps its offsets; the sound warp
    marks the centre unlabelled (and the sound targets floor to -1 anyway). Both skip its heatmap."""
    joints = np.zeros((1, 18, 3))
    joints[0, 0] = (8.0, 20.0, 2)  # -> (2, 5) on the map
    joints[0, 17] = (-1.6, 20.0, 1)  # -> (-0.4, 5)
    params = AffineParams((32.0, 32.0), 64.0, 0.0, False)  # identity at S = 64, so map = image / 4
    for official in (False, True):
        t = DEKRAffineTransform(64, 16, load_spec("coco").flip_index, official_flip=official,
                                official_visibility=official)
        kp = t(np.zeros((64, 64, 3), np.uint8), None, joints, params=params)["keypoints"]
        assert kp[0, 17, 0] == pytest.approx(-0.4) and kp[0, 0, 2] == 2
        assert kp[0, 17, 2] == (1.0 if official else 0.0)
        targets = build_targets(kp, np.array([400.0]), None, 16, TargetConfig(official_quirks=official))
        assert bool(targets["offset_weight"][:2].any()) == official
        if official:  # the window [int(-0.4) - 4, int(-0.4) + 4) clipped: columns 0-3
            assert targets["offset"][0, 5, :4].tolist() == pytest.approx([-2.0, -1.0, 0.0, 1.0])
            assert not targets["offset_weight"][0, :, 4:].any()
        assert targets["heatmap"][17].max() == 0
    root = fixtures_dir / "coco_minicoco"
    quirks = CocoKeypointDataset(root / "annotations/person_keypoints_train2017.json",
                                 root / "images/train2017", load_spec("coco"), train=True,
                                 official_quirks=True, gpu_targets=True)
    assert quirks.transform.official_visibility and quirks.transform.official_flip


def test_pixel_transforms_from_config():
    compose = build_pixel_transforms([{"name": "ColorJitter", "params": {"brightness": 0.5, "p": 1.0}},
                                      {"name": "GaussianBlur", "params": {"p": 1.0}}])
    compose.set_random_seed(0)
    img = np.full((32, 32, 3), 120, np.uint8)
    assert compose(image=img)["image"].shape == img.shape
    with pytest.raises(ValueError, match="not a pixel-level transform"):
        build_pixel_transforms([{"name": "HorizontalFlip"}])
    with pytest.raises(ValueError, match="no transform named"):
        build_pixel_transforms([{"name": "NoSuchTransform"}])


def test_augmentation_config_validation():
    with pytest.raises(ValueError):
        AugmentationConfig(min_scale=2.0, max_scale=1.0)
    with pytest.raises(ValueError):
        AugmentationConfig(scale_type="diagonal")
