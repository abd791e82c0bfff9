"""Rescoring nets fit one skeleton: a net for another spec is refused, naming the file and both specs."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from dekr.checkpoint import ModelLoadError
from dekr.data.spec import load_spec
from dekr.inference.rescore import RescoreNet, load_rescore_net, num_features, save_rescore_net

from tests.helpers.paths import FIXTURES

OFFICIAL_CROWDPOSE = FIXTURES / "reference" / "final_rescore_crowd_pose_kpt.pth"


def test_our_file_records_its_skeleton_and_loads_for_it(tmp_path):
    spec = load_spec("ap10k")
    net = RescoreNet(num_features(spec))
    path = save_rescore_net(net, tmp_path / "ap10k.pth", spec, num_samples=3)
    saved = torch.load(path, weights_only=True)
    assert saved["spec_name"] == "ap10k" and saved["keypoint_names"] == list(spec.keypoint_names)
    assert saved["rescore_limbs"] == [list(limb) for limb in spec.rescore_limbs] and saved["num_samples"] == 3
    x = torch.rand(2, 68)
    assert torch.equal(load_rescore_net(path, spec)(x), net(x))


def test_coco_net_is_refused_for_ap10k(tmp_path):
    """Another input size (COCO: 19 limbs, 74 features; AP-10K: 17 limbs, 68)."""
    path = save_rescore_net(RescoreNet(74), tmp_path / "coco.pth", load_spec("coco"))
    with pytest.raises(ModelLoadError, match=rf"rescoring net {re.escape(str(path))} was trained for spec 'coco' "
                                             r"\(17 keypoints: nose, .*not for the model's spec 'ap10k' \(17 "
                                             r"keypoints, 17 rescoring limbs: 68 features\).*train_rescore.py"):
        load_rescore_net(path, load_spec("ap10k"))


def test_same_size_net_of_another_skeleton_is_refused(tmp_path):
    """The input size alone cannot tell: the recorded skeleton does (here AP-10K with renamed keypoints)."""
    ap10k = load_spec("ap10k")
    renamed = dataclasses.replace(ap10k, name="ap10k_renamed", keypoint_names=tuple(f"kp{i}" for i in range(17)))
    path = save_rescore_net(RescoreNet(num_features(renamed)), tmp_path / "renamed.pth", renamed)
    with pytest.raises(ModelLoadError, match=r"trained for spec 'ap10k_renamed' \(17 keypoints: kp0, kp1"):
        load_rescore_net(path, ap10k)
    reordered = dataclasses.replace(ap10k, rescore_limbs=ap10k.rescore_limbs[::-1])
    with pytest.raises(ModelLoadError, match="not for the model's spec 'ap10k'"):
        load_rescore_net(save_rescore_net(RescoreNet(68), tmp_path / "r.pth", reordered), ap10k)


def test_official_file_is_checked_by_its_input_size():
    assert load_rescore_net(OFFICIAL_CROWDPOSE, load_spec("crowdpose")).l1.in_features == 59
    with pytest.raises(ModelLoadError, match=rf"rescoring net {re.escape(str(OFFICIAL_CROWDPOSE))} takes 59 "
                                             r"features, but the model's spec 'ap10k' gives 68 \(17 keypoints"):
        load_rescore_net(OFFICIAL_CROWDPOSE, load_spec("ap10k"))


def test_unusable_files_and_specs(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_rescore_net(tmp_path / "none.pth", load_spec("coco"))
    (tmp_path / "text.pth").write_text("not a torch file")
    with pytest.raises(ModelLoadError, match="text.pth is not a readable PyTorch file"):
        load_rescore_net(tmp_path / "text.pth", load_spec("coco"))
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ModelLoadError, match=r"other.pth: not a rescoring-net checkpoint \(missing"):
        load_rescore_net(tmp_path / "other.pth", load_spec("coco"))
    no_limbs = dataclasses.replace(load_spec("coco"), name="bare", rescore_limbs=(), rescore_torso_limbs=())
    with pytest.raises(ModelLoadError, match="spec 'bare' defines no rescore_limbs"):
        load_rescore_net(OFFICIAL_CROWDPOSE, no_limbs)
