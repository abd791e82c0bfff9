"""Decoding pieces: config defaults, resize, flip, heat values, multi-scale rescaling, rescoring."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dekr.data.spec import load_spec
from dekr.inference import DecodeConfig, predict_poses
from dekr.inference.decode import (
    ScaleProposals,
    aggregate_scales,
    decode_scale,
    heat_values,
    poses_at_pixels,
    upsampled_heatmaps,
)
from dekr.inference.preprocess import resize_image, resize_info
from dekr.inference.rescore import (
    RescoreNet,
    load_rescore_net,
    num_features,
    rescore,
    rescore_features,
    save_rescore_net,
)

from tests.helpers.paths import FIXTURES

OFFICIAL_RESCORE = FIXTURES / "reference" / "final_rescore_crowd_pose_kpt.pth"


def test_official_test_defaults_per_dataset():
    coco = DecodeConfig.for_dataset("coco")
    assert (coco.nms_thre, coco.nms_num_thre, coco.decrease) == (0.05, 8, 0.9)
    crowd = DecodeConfig.for_dataset("crowdpose")
    assert (crowd.nms_thre, crowd.nms_num_thre, crowd.decrease) == (0.05, 7, 0.8)
    assert coco.max_num_people == 30 and coco.keypoint_threshold == 0.01 and coco.flip_test
    assert coco.flip_shift == 3 and coco.scales == (1.0,) and coco.input_size == 512
    assert DecodeConfig.for_dataset("coco", scales=[2, 1, 0.5]).scales == (2.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="contain 1"):
        DecodeConfig(scales=(2.0, 0.5))
    with pytest.raises(ValueError, match="unknown decode option"):
        DecodeConfig.for_dataset("coco", nms_threshold=0.1)


def test_resize_matches_official_sizes():
    # official get_multi_scale_size: short side -> 512, long side aligned up to 64
    info = resize_info(480, 640, 512)
    assert info.base_size == (704, 512) and info.factor == pytest.approx(512 / 480)
    assert info.center == (320.0, 240.0)
    info = resize_info(640, 427, 512)
    assert info.base_size == (512, 768)
    assert info.size_at(2.0) == (1024, 1536) and info.size_at(0.5) == (256, 384)
    image = np.full((640, 427, 3), 200, dtype=np.uint8)
    assert resize_image(image, info, 0.5).shape == (384, 256, 3)
    # the way back inverts the way in
    xy = torch.tensor([[10.0, 20.0], [400.0, 600.0]])
    m = info.matrix(1.0)
    fwd = xy @ torch.tensor(m[:, :2].T, dtype=torch.float32) + torch.tensor(m[:, 2], dtype=torch.float32)
    assert torch.allclose(info.to_original(fwd), xy, atol=1e-3)


def test_poses_at_pixels_is_pixel_minus_offset():
    off = torch.zeros(1, 4, 3, 5)
    off[0, :, 1, 2] = torch.tensor([1.0, -2.0, 0.5, 0.25])
    poses = poses_at_pixels(off, torch.tensor([[1 * 5 + 2]]))
    assert poses[0, 0].tolist() == [[1.0, 3.0], [1.5, 0.75]]


def test_flip_average_reorders_and_mirrors():
    k, h, w = 3, 8, 8
    flip_index = [0, 2, 1]
    hm = torch.zeros(1, k + 1, h, w)
    hm[0, -1, 4, 2] = 1.0
    off = torch.zeros(1, 2 * k, h, w)
    off[0, :, 4, 2] = torch.tensor([1.0, 0.0, 2.0, 0.0, -1.0, 0.0])  # keypoints x = 1, 0, 3 at y = 4
    # the perfectly consistent flipped output (official shift 3: x -> w - 1 - x in output pixels)
    hm_f = hm.flip(-1)[:, [0, 2, 1, 3]]
    xf = w - 1 - 2  # mirrored center pixel
    kp_f = torch.tensor([w - 1 - 1.0, w - 1 - 3.0, w - 1 - 0.0])  # mirrored keypoints, left/right swapped
    off_f = torch.zeros_like(off)
    off_f[0, 0::2, 4, xf] = xf - kp_f
    prop = decode_scale(hm, off, 1.0, 4, 5, 0.01, (300, 200), flip_index, hm_f, off_f, flip_shift=3)
    assert prop.valid[0].sum() == 1
    assert prop.poses[0, 0].tolist() == [[4.0, 16.0], [0.0, 16.0], [12.0, 16.0]]  # x4: base input pixels


def test_heat_values_equal_official_upsampled_maps():
    torch.manual_seed(0)
    props = [ScaleProposals(torch.zeros(1, 0, 3, 2), torch.zeros(1, 0), torch.zeros(1, 0, dtype=torch.bool),
                            torch.rand(1, 4, 16 * s // 2, 24 * s // 2), 4 / (s / 2)) for s in (4, 2, 1)]
    # scales 2, 1, 0.5 of a 64 x 96 base canvas
    poses = torch.rand(1, 50, 3, 2) * torch.tensor([110.0, 75.0]) - 5
    got = heat_values(props, poses, (96, 64))
    full = upsampled_heatmaps(props)[0]
    assert full.shape == (4, 64, 96)
    px = poses[0, ..., 0].floor().clamp(0, 95).long()
    py = poses[0, ..., 1].floor().clamp(0, 63).long()
    want = full[torch.arange(3)[None, :].expand(50, 3), py, px]
    assert torch.allclose(got[0], want, atol=1e-5)


def test_multiscale_scores_rescaled_to_scale_one():
    def prop(scores):
        s = torch.tensor([scores])
        return ScaleProposals(torch.zeros(1, len(scores), 2, 2), s, s > 0.01, torch.zeros(1, 3, 4, 4), 4.0)

    poses, scores, valid = aggregate_scales([prop([0.4, 0.2]), prop([0.8, 0.5]), prop([0.1])], [2.0, 1.0, 0.5], 0.9)
    assert scores[0].tolist() == pytest.approx([0.8 * 0.9, 0.4 * 0.9, 0.8, 0.5, 0.8 * 0.9])
    assert poses.shape == (1, 5, 2, 2) and valid.all()


def test_rescore_features_layout_hand_computed():
    spec = load_spec("crowdpose")
    assert num_features(spec) == 59 and num_features(load_spec("coco")) == 74
    kp = torch.zeros(1, 14, 3)
    kp[0, :, 2] = torch.arange(14) / 10
    # torso limbs 9 (6->8) and 11 (8->10): lengths 3 and 5 -> normaliser 4
    kp[0, 6, :2] = torch.tensor([0.0, 0.0])
    kp[0, 8, :2] = torch.tensor([0.0, -3.0])
    kp[0, 10, :2] = torch.tensor([4.0, 0.0])
    f = rescore_features(kp, spec)[0]
    assert f.shape == (59,)
    assert f[18:20].tolist() == pytest.approx([0.0, 0.75])  # limb 9 vector (kp6 - kp8) / 4
    assert f[22:24].tolist() == pytest.approx([-1.0, -0.75])  # limb 11 vector (kp8 - kp10) / 4
    assert f[30 + 9].item() == pytest.approx(0.75) and f[30 + 11].item() == pytest.approx(1.25)
    assert f[45:].tolist() == pytest.approx((torch.arange(14) / 10).tolist())
    # a degenerate pose: normaliser clamped to 1
    assert torch.isfinite(rescore_features(torch.zeros(2, 14, 3), spec)).all()


def test_official_rescore_checkpoint_loads_and_scores():
    spec = load_spec("crowdpose")
    net = load_rescore_net(OFFICIAL_RESCORE, spec)
    assert net.l1.in_features == 59 and net.l1.out_features == 256 and net.l3.out_features == 1
    kp = torch.rand(5, 14, 3) * torch.tensor([300.0, 300.0, 1.0])
    scores = torch.rand(5)
    out = rescore(net, kp, scores, spec)
    assert out.shape == (5,) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="features"):
        load_rescore_net(OFFICIAL_RESCORE, load_spec("coco"))


def test_our_rescore_checkpoint_roundtrip(tmp_path):
    spec = load_spec("coco")
    net = RescoreNet(num_features(spec))
    path = save_rescore_net(net, tmp_path / "r.pth", spec)
    loaded = load_rescore_net(path, spec)
    x = torch.rand(3, 74)
    assert torch.equal(loaded(x), net(x))


def test_custom_skeleton_rescore():
    from dekr.data.spec import KeypointSpec

    spec = KeypointSpec(name="tri", keypoint_names=("a", "b", "c"), flip_pairs=((1, 2),), sigmas=(0.05,) * 3,
                        rescore_limbs=((0, 1), (0, 2), (1, 2)), rescore_torso_limbs=(0, 1))
    assert rescore_features(torch.rand(4, 3, 3), spec).shape == (4, 12)


def test_bad_images_raise():
    spec = load_spec("coco")
    net = lambda x: (torch.zeros(x.shape[0], 18, x.shape[2] // 4, x.shape[3] // 4),  # noqa: E731
                     torch.zeros(x.shape[0], 34, x.shape[2] // 4, x.shape[3] // 4))
    with pytest.raises(ValueError, match="uint8"):
        predict_poses(net, [np.zeros((64, 64, 3), dtype=np.float32)], spec)
    with pytest.raises(ValueError, match="HxWx3"):
        predict_poses(net, [np.zeros((64, 64), dtype=np.uint8)], spec)
    # a blank network output: no poses, well-formed
    out = predict_poses(net, [np.zeros((100, 80, 3), dtype=np.uint8)], spec)
    assert out[0]["keypoints"].shape == (0, 17, 3) and out[0]["scores"].shape == (0,)
    assert predict_poses(net, [], spec) == []
