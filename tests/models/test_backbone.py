"""ImageNet backbone weights: timm's and the official HRNet-Image-Classification layouts, loaded
strictly from real files written here; clear, fast errors for every way they can be unusable."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants as hf_constants
from safetensors.torch import save_file

from dekr.models.backbone import (
    PRETRAINED_OPTION,
    HRNetBackbone,
    PretrainedBackboneError,
    ensure_pretrained_backbone,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hrnet_imagenet"
NAME = "hrnet_w18_small"  # official hrnet_w18_small_v1
HUB_ID = "timm/hrnet_w18_small.gluon_in1k"  # timm's default ImageNet weights for NAME


@pytest.fixture(scope="module")
def timm_state() -> dict[str, torch.Tensor]:
    """A classification HRNet's state dict in timm's layout (random weights, fixed seed)."""
    torch.manual_seed(0)
    return timm.create_model(NAME).state_dict()


def read_official_keys() -> list[tuple[str, tuple[int, ...]]]:
    keys = []
    for line in (FIXTURES / "keys_official_cls_hrnet_w18_small_v1.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, shape = line.partition("\t")
            keys.append((name, tuple(int(d) for d in shape.split("x")) if shape else ()))
    return keys


def assert_body_equals(backbone: HRNetBackbone, source: dict[str, torch.Tensor]) -> None:
    body = backbone.body.state_dict()
    for key, tensor in body.items():
        if key.endswith("num_batches_tracked") and key not in source:
            continue
        assert torch.equal(tensor, source[key]), key


def test_timm_layout_file_loads_strictly(tmp_path: Path, timm_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "hrnet_w18_small_timm.pth"
    torch.save(timm_state, path)  # with incre_modules, downsamp_modules, final_layer, classifier
    backbone = HRNetBackbone(NAME, pretrained=str(path))
    assert_body_equals(backbone, timm_state)
    assert len(backbone.body.state_dict()) < len(timm_state)  # the classification head was left out
    assert ensure_pretrained_backbone(NAME, str(path)).startswith(f"{NAME} ImageNet weights from {path}")
    # timm's hub files are safetensors: the same loader reads them.
    safe = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in timm_state.items()}, str(safe))
    assert_body_equals(HRNetBackbone(NAME, pretrained=str(safe)), timm_state)


def test_official_layout_file_loads(tmp_path: Path) -> None:
    """The official cls_hrnet key list (generated from HRNet-Image-Classification's code) fits
    timm's body: same names and shapes. Old files lack num_batches_tracked; training scripts wrap
    the dict (``state_dict``) and DataParallel prefixes ``module.``."""
    keys = read_official_keys()
    assert {"classifier.weight", "final_layer.0.weight", "incre_modules.0.0.conv1.weight"} <= {k for k, _ in keys}
    torch.manual_seed(1)
    official = {name: torch.randn(shape) for name, shape in keys if not name.endswith("num_batches_tracked")}
    plain = tmp_path / "hrnetv2_w18_small_v1_imagenet_pretrained.pth"
    torch.save(official, plain)
    wrapped = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 100, "state_dict": {f"module.{k}": v for k, v in official.items()}}, wrapped)
    for path in (plain, wrapped):
        backbone = HRNetBackbone(NAME, pretrained=str(path))
        assert_body_equals(backbone, official)
        assert all(v == 0 for k, v in backbone.body.state_dict().items() if k.endswith("num_batches_tracked"))
        assert "num_batches_tracked absent" in ensure_pretrained_backbone(NAME, str(path))


def test_extra_non_classifier_key_fails_listing_it(tmp_path: Path, timm_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "extra.pth"
    torch.save({**timm_state, "stage5.0.conv.weight": torch.zeros(3)}, path)
    with pytest.raises(PretrainedBackboneError, match=r"1 unexpected tensor.*stage5\.0\.conv\.weight"):
        HRNetBackbone(NAME, pretrained=str(path))


def test_missing_backbone_key_fails_listing_it(tmp_path: Path, timm_state: dict[str, torch.Tensor]) -> None:
    key = "stage2.0.branches.0.0.conv1.weight"
    path = tmp_path / "missing.pth"
    torch.save({k: v for k, v in timm_state.items() if k != key}, path)
    with pytest.raises(PretrainedBackboneError, match=rf"1 backbone tensor\(s\) missing: {key}"):
        ensure_pretrained_backbone(NAME, str(path))
    with pytest.raises(PretrainedBackboneError, match=key):
        HRNetBackbone(NAME, pretrained=str(path))


def test_wrong_width_file_fails_naming_shapes(tmp_path: Path) -> None:
    path = tmp_path / "hrnet_w18_imagenet.pth"
    torch.save(HRNetBackbone("hrnet_w18").body.state_dict(), path)
    with pytest.raises(PretrainedBackboneError) as err:
        ensure_pretrained_backbone("hrnet_w32", str(path))  # checks shapes on a meta-device body
    message = str(err.value)
    assert "shape mismatch" in message and PRETRAINED_OPTION in message
    assert "transition1.0.0.weight: file (18, 256, 3, 3) vs hrnet_w32 (32, 256, 3, 3)" in message


def test_missing_or_unreadable_file_fails_naming_file_and_option(tmp_path: Path) -> None:
    missing = tmp_path / "hrnetv2_w32_imagenet_pretrained.pth"
    with pytest.raises(PretrainedBackboneError, match=rf"{missing} does not exist.*--{PRETRAINED_OPTION} /path/to/"):
        ensure_pretrained_backbone("hrnet_w32", str(missing))
    with pytest.raises(PretrainedBackboneError, match="does not exist"):
        HRNetBackbone(NAME, pretrained=str(missing))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedBackboneError, match=rf"cannot read ImageNet backbone file {garbage}"):
        ensure_pretrained_backbone(NAME, str(garbage))
    assert "from scratch" in ensure_pretrained_backbone(NAME, False)


def test_hub_weights_offline_fail_fast_naming_hub_file_and_option(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    start = time.monotonic()
    with pytest.raises(PretrainedBackboneError) as err:
        ensure_pretrained_backbone(NAME, True)
    with pytest.raises(PretrainedBackboneError):
        HRNetBackbone(NAME, pretrained=True)
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert f"{HUB_ID}/resolve/main/model.safetensors" in message
    assert "HF_HUB_OFFLINE" in message and f"--{PRETRAINED_OPTION} /path/to/" in message


def test_hub_weights_unreachable_fail_fast(tmp_path: Path, monkeypatch) -> None:
    # Not offline by flag, but the hub is unreachable (a closed local port): one short probe,
    # not huggingface_hub's ~25 s of retries per file.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    start = time.monotonic()
    with pytest.raises(PretrainedBackboneError, match=rf"{HUB_ID}.*hub is unreachable.*{PRETRAINED_OPTION}"):
        ensure_pretrained_backbone(NAME, True)
    assert time.monotonic() - start < 10


def test_hub_weights_from_cache_load_without_network(tmp_path: Path, monkeypatch,
                                                     timm_state: dict[str, torch.Tensor]) -> None:
    # A Hugging Face cache as hf_hub_download leaves it: refs/main -> snapshots/<commit>/file.
    repo = tmp_path / "hub" / f"models--{HUB_ID.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in timm_state.items()}, str(repo / "snapshots" / commit / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert f"timm's hub {HUB_ID}" in ensure_pretrained_backbone(NAME, True)
    assert_body_equals(HRNetBackbone(NAME, pretrained=True), timm_state)
