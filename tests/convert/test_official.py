"""Official checkpoint conversion: exact reference outputs, key coverage, clear mismatch errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dekr
from dekr.convert import CheckpointMismatchError, convert_official_state_dict, load_official_state_dict
from dekr.models.dekr import DEKRNet, DEKRNetConfig
from tests.helpers.official_standin import REFERENCE_DIR, read_keys, standin_state_dict, write_standin_checkpoint
from tests.scripts.script_runner import run_script

VARIANT_NETS = {
    "w32_coco": DEKRNetConfig(backbone="hrnet_w32", num_keypoints=17, heatmap_channels=32),
    "w48_coco": DEKRNetConfig(backbone="hrnet_w48", num_keypoints=17, heatmap_channels=48),
    "w32_crowdpose": DEKRNetConfig(backbone="hrnet_w32", num_keypoints=14, heatmap_channels=32),
    "w48_crowdpose": DEKRNetConfig(backbone="hrnet_w48", num_keypoints=14, heatmap_channels=48),
}
OFFICIAL_PARAMS = {"w32_coco": 29_561_182, "w48_coco": 65_684_590, "w32_crowdpose": 29_522_071,
                   "w48_crowdpose": 65_634_631}
REFERENCE_OUTPUTS = {"w32_coco": "forward_w32_coco_seed0_128x128.npz",
                     "w32_crowdpose": "forward_w32_crowdpose_seed0_96x160.npz"}


def relative_error(ours: torch.Tensor, ref: np.ndarray) -> float:
    ref_t = torch.from_numpy(ref)
    return ((ours - ref_t).norm() / ref_t.norm()).item()


@pytest.mark.parametrize("variant", sorted(VARIANT_NETS))
def test_every_official_key_is_used_and_parameter_count_is_official(variant: str) -> None:
    keys = read_keys(REFERENCE_DIR / f"keys_{variant}.txt")
    official_params = sum(int(np.prod(s)) for name, s in keys
                          if not name.endswith(("running_mean", "running_var", "num_batches_tracked", "regular_matrix")))
    assert official_params == OFFICIAL_PARAMS[variant]
    net = DEKRNet(VARIANT_NETS[variant])
    converted = convert_official_state_dict(standin_state_dict(variant), net)
    assert set(converted) == set(net.state_dict())
    assert sum(p.numel() for p in net.parameters()) == OFFICIAL_PARAMS[variant]
    # Every official value lands somewhere: sums of all official float tensors (less the fixed
    # regular grids) equal the sums over ours.
    official = standin_state_dict(variant)
    off_sum = sum(v.double().sum() for k, v in official.items() if v.is_floating_point() and "regular" not in k)
    our_sum = sum(v.double().sum() for v in converted.values() if v.is_floating_point())
    assert torch.isclose(off_sum, our_sum, rtol=1e-12)


@pytest.mark.parametrize("variant", sorted(REFERENCE_OUTPUTS))
def test_converted_checkpoint_reproduces_official_outputs(variant: str, tmp_path: Path) -> None:
    official = write_standin_checkpoint(variant, tmp_path / f"pose_dekr_hrnet{variant}.pth")
    out = tmp_path / f"{variant}.ckpt"
    run_script("convert.py", [str(official), "--config", f"{variant}.yaml", "--out", str(out)])
    module = dekr.DEKRModule.load_from_checkpoint(out, map_location="cpu").eval()
    ref = np.load(REFERENCE_DIR / REFERENCE_OUTPUTS[variant])
    with torch.no_grad():
        heatmaps, offsets = module(torch.from_numpy(ref["input"]))
    assert heatmaps.shape == ref["heatmap"].shape and offsets.shape == ref["offset"].shape
    assert relative_error(heatmaps, ref["heatmap"]) < 1e-4
    assert relative_error(offsets, ref["offset"]) < 1e-4


def test_torchvision_backend_reproduces_official_outputs() -> None:
    cfg = DEKRNetConfig(adaptive_backend="torchvision")
    net = DEKRNet(cfg).eval()
    net.load_state_dict(convert_official_state_dict(standin_state_dict("w32_coco"), net))
    ref = np.load(REFERENCE_DIR / REFERENCE_OUTPUTS["w32_coco"])
    with torch.no_grad():
        heatmaps, offsets = net(torch.from_numpy(ref["input"]))
    assert relative_error(offsets, ref["offset"]) < 1e-4


def test_other_variant_names_shape_conflicts() -> None:
    net = DEKRNet(VARIANT_NETS["w32_coco"])
    with pytest.raises(CheckpointMismatchError, match=r"shape conflicts.*transition_offset|shape conflicts") as err:
        convert_official_state_dict(standin_state_dict("w32_crowdpose"), net)
    assert "branch problems" in str(err.value) or "shape conflicts" in str(err.value)
    with pytest.raises(CheckpointMismatchError, match="another variant"):
        convert_official_state_dict(standin_state_dict("w48_coco"), net)


def test_missing_and_unexpected_keys_are_named() -> None:
    net = DEKRNet(VARIANT_NETS["w32_coco"])
    state = standin_state_dict("w32_coco")
    del state["stage4.2.fuse_layers.3.2.0.1.running_var"]
    state["extra_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError) as err:
        convert_official_state_dict(state, net)
    message = str(err.value)
    assert "missing: backbone.body.stage4.2.fuse_layers.3.2.0.1.running_var" in message
    assert "unexpected: extra_head.weight" in message


def test_wrapped_and_ddp_prefixed_checkpoints_load(tmp_path: Path) -> None:
    state = standin_state_dict("w32_crowdpose")
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded = load_official_state_dict(path)
    assert set(loaded) == set(state)


def test_truncated_and_missing_files(tmp_path: Path) -> None:
    good = write_standin_checkpoint("w32_crowdpose", tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointMismatchError, match="truncated.pth is not a readable PyTorch checkpoint"):
        load_official_state_dict(truncated)
    with pytest.raises(FileNotFoundError, match="nope.pth does not exist"):
        load_official_state_dict(tmp_path / "nope.pth")


def test_script_reports_mismatch_without_writing(tmp_path: Path, monkeypatch, capsys) -> None:
    # scripts/convert.py's main in this process (the CLI's success path runs in a subprocess above)
    import convert

    official = write_standin_checkpoint("w32_crowdpose", tmp_path / "crowd.pth")
    out = tmp_path / "wrong.ckpt"
    assert convert.main([str(official), "--config", "w32_coco.yaml", "--out", str(out)]) == 1
    stderr = capsys.readouterr().err
    assert "predicts 14 keypoints" in stderr and "chosen spec 'coco' has 17" in stderr
    assert not out.exists()
    w48 = write_standin_checkpoint("w48_coco", tmp_path / "w48.pth")
    assert convert.main([str(w48), "--config", "w32_coco.yaml", "--out", str(out)]) == 1
    stderr = capsys.readouterr().err
    assert "does not fit w32_coco.yaml: backbone: checkpoint 'hrnet_w48' vs config 'hrnet_w32'" in stderr
    assert "heatmap_channels: checkpoint 48 vs config 32" in stderr and not out.exists()
