"""SuperGradients ``dekr_w32_no_dc`` conversion: SG's own outputs and preprocessing, strictness.

The reference (``forward_sg_dekr_w32_no_dc_seed0_128x128.npz``) was made by super-gradients 3.7.1
from ``make_state_dict(read_keys(keys_sg_dekr_w32_no_dc.txt), 0)`` (see shared/reference/README.md):
``image_rgb`` (112x128), ``input`` (SG's preprocessing of it at network size 128), SG's heatmap
logits and offsets.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import nn

from dekr.convert.base import ConvertedCheckpoint
from dekr.convert.official import CheckpointMismatchError
from dekr.convert.supergradients import (
    SG_DECODE,
    convert_supergradients,
    convert_supergradients_rescore,
    is_supergradients_layout,
)
from dekr.data.spec import load_spec
from dekr.inference.config import DecodeConfig
from dekr.inference.preprocess import resize_image, resize_info, to_input_tensor
from dekr.inference.rescore import RescoreNet, num_features, rescore, rescore_features
from dekr.models.dekr import DEKRNet
from tests.helpers.official_standin import REFERENCE_DIR, make_state_dict, read_keys

KEYS = REFERENCE_DIR / "keys_sg_dekr_w32_no_dc.txt"
REFERENCE = REFERENCE_DIR / "forward_sg_dekr_w32_no_dc_seed0_128x128.npz"
SG_PARAMS = 29_603_308
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def relative_error(ours: torch.Tensor, ref: np.ndarray) -> float:
    ref_t = torch.from_numpy(ref)
    return ((ours - ref_t).norm() / ref_t.norm()).item()


@pytest.fixture(scope="module")
def sg_state() -> dict[str, torch.Tensor]:
    return make_state_dict(read_keys(KEYS), 0)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as ref:
        return {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def converted(sg_state: dict[str, torch.Tensor]) -> ConvertedCheckpoint:
    result = convert_supergradients({"net": sg_state, "processing_params": {}})
    assert result is not None
    return result


def test_architecture_and_decode_options_are_read_off(sg_state, converted) -> None:
    assert converted.format == "supergradients" and converted.rescore_state is None
    cfg = converted.net_config
    assert (cfg.backbone, cfg.num_keypoints, cfg.heatmap_channels, cfg.offset_channels_per_keypoint) == \
        ("hrnet_w32", 17, 32, 15)
    assert (cfg.offset_blocks, cfg.offset_block, cfg.dilation, cfg.heatmap_activation, cfg.disentangled) == \
        (2, "basic", 5, "sigmoid", True)
    assert converted.decode == SG_DECODE
    decode = DecodeConfig.for_dataset("coco", **converted.decode)  # every option is a DecodeConfig field
    assert (decode.channel_order, decode.resize, decode.input_size, decode.pad_value) == ("bgr", "letterbox", 640, 127)
    # the parameter count is SG's (that every value lands in the right place, the parity test shows)
    assert sum(v.numel() for k, v in sg_state.items() if not k.endswith(BUFFERS)) == SG_PARAMS
    assert sum(v.numel() for k, v in converted.state_dict.items() if not k.endswith(BUFFERS)) == SG_PARAMS


def _ema_ddp(state: dict[str, torch.Tensor]) -> dict:
    # "net" holds something else (not even DEKR): the converter must take "ema_net", as SG's loader does
    return {"net": {"module.conv1.weight": torch.zeros(1)},
            "ema_net": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}


@pytest.mark.parametrize("wrap", [_ema_ddp, lambda s: s], ids=["ema_net+ddp", "plain"])
def test_wrapped_checkpoints_give_the_same_weights(wrap, sg_state, converted) -> None:
    other = convert_supergradients(wrap(sg_state))
    assert other is not None
    assert list(other.state_dict) == list(converted.state_dict)
    assert all(torch.equal(other.state_dict[k], v) for k, v in converted.state_dict.items())


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine OpenMP's spinning threads make this W32
    forward 25x slower (9 s instead of 0.35 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_converted_checkpoint_reproduces_sg_outputs(converted, reference) -> None:
    with torch.device("meta"):
        sg_net = DEKRNet(converted.net_config)  # no init: every tensor comes from the checkpoint
    sg_net.load_state_dict(converted.state_dict, strict=True, assign=True)
    sg_net.eval()
    captured: list[torch.Tensor] = []
    # the logits, before the net's sigmoid: what the heatmap head returns, caught in the same forward pass
    hook = sg_net.heatmap_head.register_forward_hook(lambda module, args, out: captured.append(out))
    try:
        with torch.no_grad(), single_thread():
            heatmaps, offsets = sg_net(torch.from_numpy(reference["input"]))
    finally:
        hook.remove()
    logits = captured[0]
    assert logits.shape == reference["sg_heatmap_logits"].shape and offsets.shape == reference["sg_offset"].shape
    # measured: logits 4.8e-7, offsets 2.6e-7, sigmoid heatmaps 5.9e-8 (float32, CPU)
    assert relative_error(logits, reference["sg_heatmap_logits"]) < 1e-4
    assert relative_error(offsets, reference["sg_offset"]) < 1e-4
    assert relative_error(heatmaps, reference["heatmap"]) < 1e-4
    assert relative_error(offsets, reference["offset"]) < 1e-4


def test_sg_preprocessing_reproduces_sg_input(reference) -> None:
    image = reference["image_rgb"]  # 112x128 RGB: letterboxed to 128 with no resize, 16 pad rows
    cfg = DecodeConfig(**{**SG_DECODE, "input_size": 128})
    info = resize_info(image.shape[0], image.shape[1], cfg.input_size, cfg.resize)
    assert info.factor == 1.0 and info.base_size == (128, 128)
    canvas = resize_image(image, info, 1.0, cfg.pad_value)
    ours = to_input_tensor([canvas], "cpu", None, cfg.channel_order, cfg.pad_value)
    assert ours.shape == reference["input"].shape
    # measured: 0 (bit-identical)
    assert (ours - torch.from_numpy(reference["input"])).abs().max().item() < 1e-5
    # and the default (official) preprocessing does not
    default = to_input_tensor([canvas], "cpu")
    assert (default - torch.from_numpy(reference["input"])).abs().max().item() > 0.1


def test_missing_unexpected_and_misshapen_keys_are_named(sg_state) -> None:
    state = OrderedDict(sg_state)
    del state["stage4.2.fuse_layers.3.2.0.1.running_var"]
    del state["offset_feature_layers.5.1.bn2.weight"]
    state["extra_head.weight"] = torch.zeros(3)
    state["offset_feature_layers.0.2.conv1.weight"] = torch.zeros(15, 15, 3, 3)  # a third block in one branch
    state["head_heatmap.1.weight"] = torch.zeros(15, 32, 1, 1)  # 14 keypoints + centre
    with pytest.raises(CheckpointMismatchError) as err:
        convert_supergradients({"net": state})
    message = str(err.value)
    assert "missing: backbone.body.stage4.2.fuse_layers.3.2.0.1.running_var" in message
    assert "unexpected: extra_head.weight" in message
    assert "heatmap_head.final.weight: checkpoint (15, 32, 1, 1) vs model (18, 32, 1, 1)" in message
    assert "offset_head.blocks.1.bn2.weight: SG branches" in message  # keypoint 5 lacks it
    assert "offset_head.blocks.2.conv1.weight: SG branches [0]" in message


def test_branch_of_another_width_is_a_shape_conflict(sg_state) -> None:
    state = OrderedDict(sg_state)
    state["offset_feature_layers.3.0.conv1.weight"] = torch.zeros(15, 15, 5, 5)
    with pytest.raises(CheckpointMismatchError, match=r"offset_head\.blocks\.0\.conv1\.weight: SG branches disagree"):
        convert_supergradients(state)


def test_other_layouts_are_not_sg(sg_state) -> None:
    official = {name: torch.zeros(1) for name, _ in read_keys(REFERENCE_DIR / "keys_w32_coco.txt")}  # names only
    assert convert_supergradients(official) is None
    assert convert_supergradients({"state_dict": official}) is None
    assert convert_supergradients({"net": {"conv.weight": torch.zeros(1)}}) is None
    assert convert_supergradients({"net": "not weights"}) is None
    assert convert_supergradients([1, 2]) is None
    assert convert_supergradients({}) is None
    # SG keys plus an adaptive block: not the no_dc layout
    adaptive = {**sg_state, "offset_feature_layers.0.0.transform_matrix_conv.weight": torch.zeros(4, 15, 3, 3)}
    assert not is_supergradients_layout(adaptive) and convert_supergradients(adaptive) is None
    assert is_supergradients_layout(sg_state)


def _sg_rescore_state(seed: int = 0, hidden: int = 256, layers: int = 2) -> dict[str, torch.Tensor]:
    """SG ``PoseRescoringNet`` state dict: ``layers`` = [Linear, ReLU] * layers, then ``final``."""
    gen = torch.Generator().manual_seed(seed)
    state, in_features = OrderedDict(), 74
    for i in range(layers):
        state[f"layers.{2 * i}.weight"] = torch.randn(hidden, in_features, generator=gen) / in_features ** 0.5
        state[f"layers.{2 * i}.bias"] = torch.randn(hidden, generator=gen) * 0.1
        in_features = hidden
    state["final.weight"] = torch.randn(1, hidden, generator=gen) / hidden ** 0.5
    state["final.bias"] = torch.randn(1, generator=gen) * 0.1
    return state


def test_sg_rescoring_net_maps_to_ours() -> None:
    sg = _sg_rescore_state()
    ours = convert_supergradients_rescore({"net": {f"module.{k}": v for k, v in sg.items()}})
    assert ours is not None and set(ours) == {"l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias"}
    spec = load_spec("coco")
    net = RescoreNet(num_features(spec))
    net.load_state_dict(ours, strict=True)
    # SG's forward: final(ReLU(L2(ReLU(L1(features))))), on the same features (its edge_links are COCO's limbs)
    layers = nn.Sequential(nn.Linear(74, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
    final = nn.Linear(256, 1)
    layers.load_state_dict({k.removeprefix("layers."): v for k, v in sg.items() if k.startswith("layers.")})
    final.load_state_dict({"weight": sg["final.weight"], "bias": sg["final.bias"]})
    poses = torch.rand(5, 17, 3) * torch.tensor([300.0, 200.0, 1.0])
    features = rescore_features(poses, spec)
    with torch.no_grad():
        logits = final(layers(features))[:, 0]
        assert torch.allclose(net(features), logits, atol=1e-6)
    # SG's score rule (a named decode option the converter sets): sigmoid(output) replaces the score
    assert SG_DECODE["rescore_rule"] == "sigmoid"
    scores = torch.full((5,), 0.3)
    assert torch.allclose(rescore(net, poses, scores, spec, "sigmoid"), torch.sigmoid(logits), atol=1e-6)
    assert torch.allclose(rescore(net, poses, scores, spec), torch.nan_to_num(logits) * 0.3, atol=1e-6)


def test_sg_rescoring_net_of_other_depth_or_layout() -> None:
    with pytest.raises(CheckpointMismatchError, match="layers.4.weight"):
        convert_supergradients_rescore({"net": _sg_rescore_state(layers=3)})
    assert convert_supergradients_rescore({"net": {"l1.weight": torch.zeros(1)}}) is None
    assert convert_supergradients_rescore({"state_dict": _sg_rescore_state()}) is None
