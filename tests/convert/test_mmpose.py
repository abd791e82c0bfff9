"""MMPose 1.x DEKR conversion: reference outputs of MMPose's own model, layout coverage, strictness.

The reference outputs (``forward_mmpose_dekr_*.npz``) were made by MMPose 1.3.2 from
:func:`tests.helpers.official_standin.mmpose_standin_state_dict` (see shared/reference/README.md).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from dekr.convert.mmpose import convert_mmpose, mmpose_to_official
from dekr.convert.official import CheckpointMismatchError
from dekr.data.normalize import normalize_image
from dekr.inference.rescore import RescoreNet
from dekr.models.dekr import DEKRNet
from tests.helpers.official_standin import MMPOSE_REGULAR, REFERENCE_DIR, mmpose_standin_state_dict, read_keys

VARIANTS = ("w32_coco", "w32_crowdpose", "w48_coco", "w48_crowdpose")
OFFICIAL_PARAMS = {"w32_coco": 29_561_182, "w48_coco": 65_684_590, "w32_crowdpose": 29_522_071,
                   "w48_crowdpose": 65_634_631}
RESCORE_PARAMS = {"coco": 85_249, "crowdpose": 81_409}
REFERENCE_OUTPUTS = {"w32_coco": "forward_mmpose_dekr_w32_coco_seed0_128x128.npz",
                     "w32_crowdpose": "forward_mmpose_dekr_w32_crowdpose_seed0_96x160.npz"}
BUFFERS = ("running_mean", "running_var", "num_batches_tracked", "regular_matrix")


def relative_error(ours: torch.Tensor, ref: np.ndarray) -> float:
    ref_t = torch.from_numpy(ref)
    return ((ours - ref_t).norm() / ref_t.norm()).item()


def zeros_state_dict(variant: str) -> dict[str, torch.Tensor]:
    """An MMPose key layout filled with zeros (cheap even for W48): for key and shape checks."""
    state: dict[str, torch.Tensor] = OrderedDict()
    for name, shape in read_keys(REFERENCE_DIR / f"keys_mmpose_dekr_{variant}.txt"):
        if name.endswith("regular_matrix"):
            state[name] = torch.tensor(MMPOSE_REGULAR, dtype=torch.float32)
        else:
            state[name] = torch.zeros(shape, dtype=torch.long if name.endswith("num_batches_tracked") else None)
    return state


@pytest.fixture(scope="module")
def w32_coco_zeros() -> dict[str, torch.Tensor]:
    return zeros_state_dict("w32_coco")


@pytest.mark.parametrize("variant", sorted(REFERENCE_OUTPUTS))
def test_converted_checkpoint_reproduces_mmpose_outputs(variant: str) -> None:
    raw = {"meta": {"mmpose_version": "1.3.2"}, "state_dict": mmpose_standin_state_dict(variant)}
    converted = convert_mmpose(raw)
    assert converted is not None and converted.format == "mmpose" and converted.decode == {}
    with torch.device("meta"):  # skip the random init: every tensor comes from the checkpoint
        net = DEKRNet(converted.net_config)
    net.load_state_dict(converted.state_dict, strict=True, assign=True)
    net.eval()
    ref = np.load(REFERENCE_DIR / REFERENCE_OUTPUTS[variant])
    with torch.no_grad():
        heatmaps, offsets = net(torch.from_numpy(ref["input"]))
    # Official convention (ours): the converted net reproduces what MMPose computed.
    assert relative_error(heatmaps, ref["heatmap"]) < 1e-4
    assert relative_error(offsets, ref["offset"]) < 1e-4
    # MMPose's convention: same heatmaps, displacement = -offset (keypoint = location + displacement).
    assert relative_error(heatmaps, ref["mmpose_heatmaps"]) < 1e-4
    assert relative_error(-offsets, ref["mmpose_displacements"]) < 1e-4
    assert relative_error(offsets, ref["mmpose_displacements"]) > 1.0


@pytest.mark.parametrize("variant", sorted(REFERENCE_OUTPUTS))
def test_mmpose_preprocessing_is_ours(variant: str) -> None:
    """Why ``decode`` is empty: MMPose's input tensor is our normalisation of the same RGB image."""
    ref = np.load(REFERENCE_DIR / REFERENCE_OUTPUTS[variant])
    np.testing.assert_allclose(normalize_image(ref["image_rgb"])[None], ref["input"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_key_converts_to_the_official_layout_and_ours(variant: str) -> None:
    mmpose = zeros_state_dict(variant)
    head_params = sum(v.numel() for k, v in mmpose.items()
                      if not k.endswith(BUFFERS) and not k.startswith("head.rescore_net."))
    assert head_params == OFFICIAL_PARAMS[variant]

    official, rescore = mmpose_to_official(mmpose)
    # Exact official key names, order and shapes.
    expected = read_keys(REFERENCE_DIR / f"keys_{variant}.txt")
    assert [(k, tuple(v.shape)) for k, v in official.items()] == expected

    converted = convert_mmpose({"state_dict": mmpose})
    assert converted is not None
    with torch.device("meta"):
        skeleton = DEKRNet(converted.net_config)
    ours, expected_ours = converted.state_dict, skeleton.state_dict()
    assert list(ours) == list(expected_ours)
    assert all(not v.is_meta and v.shape == expected_ours[k].shape for k, v in ours.items())
    assert sum(ours[name].numel() for name, _ in skeleton.named_parameters()) == OFFICIAL_PARAMS[variant]
    skeleton.load_state_dict(ours, strict=True, assign=True)

    dataset = variant.split("_")[1]
    assert rescore is not None and converted.rescore_state is not None
    assert sum(v.numel() for v in converted.rescore_state.values()) == RESCORE_PARAMS[dataset]
    rescore_net = RescoreNet(converted.rescore_state["l1.weight"].shape[1])
    rescore_net.load_state_dict(converted.rescore_state, strict=True)


def test_values_land_where_the_official_layout_puts_them() -> None:
    """The real transforms on one block: M = A + I (biases), t = column 2, the final layer negated."""
    mmpose = zeros_state_dict("w32_crowdpose")
    generator = torch.Generator().manual_seed(0)
    for name, value in mmpose.items():
        if name.startswith("head.") and value.is_floating_point() and "regular_matrix" not in name:
            mmpose[name] = torch.randn(value.shape, generator=generator)
    official, rescore = mmpose_to_official(mmpose)
    k = 14
    affine_w = mmpose["head.displacement_conv_layers.2.transform_matrix_conv.weight"]
    affine_b = mmpose["head.displacement_conv_layers.2.transform_matrix_conv.bias"]
    kp = 5  # keypoint 5, official block 1: MMPose rows 6*5 + 3r + c
    torch.testing.assert_close(official[f"offset_feature_layers.{kp}.1.transform_matrix_conv.weight"],
                               affine_w[[30, 31, 33, 34]], rtol=0, atol=0)
    torch.testing.assert_close(official[f"offset_feature_layers.{kp}.1.transform_matrix_conv.bias"],
                               affine_b[[30, 31, 33, 34]] + torch.tensor([1.0, 0.0, 0.0, 1.0]), rtol=0, atol=0)
    torch.testing.assert_close(official[f"offset_feature_layers.{kp}.1.translation_conv.bias"],
                               affine_b[[32, 35]], rtol=0, atol=0)
    final = mmpose["head.displacement_conv_layers.3.weight"]
    assert final.shape[0] == 2 * k
    torch.testing.assert_close(official[f"offset_final_layer.{kp}.weight"], -final[10:12], rtol=0, atol=0)
    assert rescore is not None and rescore["l1.weight"] is mmpose["head.rescore_net.l1.weight"]


def test_module_prefix_and_no_rescore_net(w32_coco_zeros: dict[str, torch.Tensor]) -> None:
    """A bare state dict saved from a DDP wrapper, without the (optional) rescore net."""
    bare = {f"module.{k}": v for k, v in w32_coco_zeros.items() if not k.startswith("head.rescore_net.")}
    converted = convert_mmpose(bare)
    assert converted is not None and converted.rescore_state is None


def _error(state: dict[str, torch.Tensor]) -> str:
    with pytest.raises(CheckpointMismatchError) as err:
        convert_mmpose({"state_dict": state})
    return str(err.value)


def test_extra_missing_and_misshaped_keys_are_named(w32_coco_zeros: dict[str, torch.Tensor]) -> None:
    extra = dict(w32_coco_zeros, **{"head.heatmap_conv_layers.1.conv3.weight": torch.zeros(32, 32, 3, 3)})
    assert "unused: head.heatmap_conv_layers.1.conv3.weight" in _error(extra)

    missing = dict(w32_coco_zeros)
    del missing["head.displacement_conv_layers.2.norm.running_var"]
    del missing["head.rescore_net.l2.bias"]
    message = _error(missing)
    assert "head.displacement_conv_layers.2.norm.running_var" in message and "head.rescore_net.l2.bias" in message

    head_shape = dict(w32_coco_zeros, **{"head.displacement_conv_layers.1.adapt_conv.weight": torch.zeros(255, 15, 1, 1)})
    assert "wrong shape: head.displacement_conv_layers.1.adapt_conv.weight: (255, 15, 1, 1)" in _error(head_shape)

    # Backbone tensors pass through to the official converter, which names them under our keys.
    backbone = dict(w32_coco_zeros, **{"backbone.stage2.0.branches.0.0.conv1.weight": torch.zeros(32, 32, 1, 1)})
    del backbone["backbone.stage4.0.fuse_layers.3.0.0.1.running_mean"]
    message = _error(backbone)
    assert "backbone.body.stage2.0.branches.0.0.conv1.weight: checkpoint (32, 32, 1, 1)" in message
    assert "missing: backbone.body.stage4.0.fuse_layers.3.0.0.1.running_mean" in message

    grid = dict(w32_coco_zeros, **{"head.displacement_conv_layers.1.regular_matrix": torch.zeros(3, 9)})
    assert "head.displacement_conv_layers.1.regular_matrix: not MMPose's fixed 3x9 grid" in _error(grid)


def test_pre_v1_layout_is_refused_by_name(w32_coco_zeros: dict[str, torch.Tensor]) -> None:
    old = {k.replace("head.", "keypoint_head.").replace("displacement_conv_layers", "offset_conv_layers")
           .replace("keypoint_head.rescore_net", "rescore_net"): v for k, v in w32_coco_zeros.items()}
    with pytest.raises(CheckpointMismatchError, match="pre-1.0 MMPose DEKR layout"):
        convert_mmpose({"state_dict": old})


def test_other_content_is_not_mmpose() -> None:
    official = {name: torch.zeros(0) for name, _ in read_keys(REFERENCE_DIR / "keys_w32_coco.txt")}
    assert convert_mmpose(official) is None
    assert convert_mmpose({"state_dict": official}) is None
    assert convert_mmpose({"net": {"backbone.conv1.weight": torch.zeros(1)}}) is None
    assert convert_mmpose({"backbone.conv1.weight": torch.zeros(1), "head.final.weight": torch.zeros(1)}) is None
    assert convert_mmpose({"state_dict": {}}) is None
    assert convert_mmpose([torch.zeros(1)]) is None
