"""dekr.checkpoint: atomic writing (a failed save never truncates the previous file) and the one loader."""
from __future__ import annotations

import os
import stat
from importlib import resources
from pathlib import Path

import pytest
import torch

from dekr.checkpoint import ModelLoadError, atomic_torch_save, load_checkpoint
from dekr.config import load_section
from dekr.convert import convert_official_state_dict
from dekr.models.dekr import DEKRNet, DEKRNetConfig
from tests.helpers.paths import FIXTURES
from tests.helpers.official_standin import standin_state_dict, write_standin_checkpoint
from tests.helpers.checkpoints import small_checkpoint


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("boom while pickling")


def test_failed_save_keeps_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"step": 2, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_saved_file_has_umask_permissions(tmp_path: Path) -> None:
    path = atomic_torch_save({"a": 1}, tmp_path / "x.ckpt")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    path = small_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.ckpt")
    return path, load_checkpoint(path)


def test_load_our_checkpoint(small_model):
    path, model = small_model
    assert model.format == "ours" and model.spec.name == "coco" and model.rescore is None
    assert model.decode == {"flip_test": False, "input_size": 128}
    assert not model.net.training
    from dekr.module import DEKRModule

    ref = DEKRModule.load_from_checkpoint(path, map_location="cpu").net.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ref(x), model.net(x)):
            torch.testing.assert_close(a, b)


def test_checkpoint_carries_its_spec_and_loads_without_the_spec_file(tmp_path: Path) -> None:
    """A checkpoint trained with a spec file of one's own keeps loading after that file moves."""
    from dekr.checkpoint import SPEC_CONTENTS_KEY
    from dekr.data.spec import load_spec
    from dekr.module import DEKRModule

    spec_file = tmp_path / "my_animals.yaml"
    shipped = resources.files("dekr.data") / "specs" / "ap10k.yaml"
    spec_file.write_text(shipped.read_text().replace("name: ap10k", "name: my_animals"))
    path = small_checkpoint(tmp_path / "animals.ckpt", spec=str(spec_file))
    saved = torch.load(path, weights_only=True)
    assert saved["hyper_parameters"]["spec"] == str(spec_file)
    assert saved[SPEC_CONTENTS_KEY] == load_spec(spec_file).to_dict()
    spec_file.unlink()
    model = load_checkpoint(path)
    assert model.spec.name == "my_animals" and model.spec == load_spec(saved[SPEC_CONTENTS_KEY])
    assert model.spec.keypoint_names[:2] == ("left_eye", "right_eye") and model.spec.category_ids[0] == 1
    module = DEKRModule.from_checkpoint(str(path))  # e.g. to evaluate or keep training it
    assert module.spec == model.spec
    with pytest.raises(ModelLoadError, match="chosen spec 'coco' has 17"):
        load_checkpoint(path, spec="coco")  # another skeleton of the same size is still refused


def test_checkpoint_carries_the_data_input_size_as_its_test_size(tmp_path: Path) -> None:
    """A checkpoint saved by a fit records the data's input size: copied out of its run folder it
    still decodes at the size it was validated at (not at the spec's default 512)."""
    from dekr.checkpoint import TEST_INPUT_SIZE_KEY
    from dekr.data.datamodule import DEKRDataModule
    from dekr.data.synthetic import SyntheticConfig
    from tests.helpers.modules import tiny_module, trainer

    data = DEKRDataModule(dataset="synthetic", input_size=64, batch_size=2, num_workers=0,
                          synthetic=SyntheticConfig(num_train=2, num_val=1, image_size=64))
    fit = trainer(tmp_path / "run", max_steps=1, limit_val_batches=0, enable_checkpointing=False)
    fit.fit(tiny_module(), datamodule=data)
    path = tmp_path / "elsewhere" / "model.ckpt"
    path.parent.mkdir()
    fit.save_checkpoint(path)
    assert torch.load(path, weights_only=True)[TEST_INPUT_SIZE_KEY] == 64
    assert load_checkpoint(path).decode["input_size"] == 64
    explicit = tmp_path / "explicit.ckpt"  # model.decode's own input_size wins, as in validation
    fit.lightning_module.decode_options["input_size"] = 128
    fit.save_checkpoint(explicit)
    assert load_checkpoint(explicit).decode["input_size"] == 128


def test_run_config_gives_the_test_input_size(tmp_path):
    run = tmp_path / "run"
    path = small_checkpoint(run / "checkpoints" / "last.ckpt", decode={"flip_test": False})
    assert "input_size" not in load_checkpoint(path).decode
    (run / "config.yaml").write_text("model: {}\ndata:\n  class_path: x\n  init_args:\n    input_size: 192\n")
    assert load_checkpoint(path).decode == {"flip_test": False, "input_size": 192}


@pytest.mark.parametrize("variant", ["w32_coco", "w32_crowdpose"])
def test_load_official_checkpoint_recognises_variant(tmp_path, variant):
    path = write_standin_checkpoint(variant, tmp_path / f"pose_dekr_hrnet{variant}.pth")
    model = load_checkpoint(path)
    assert model.format == "official" and model.spec.name == variant.split("_")[1]
    assert model.net.config.backbone == "hrnet_w32" and not model.net.training
    # the same network as the official converter gives for the run config
    net = DEKRNet(DEKRNetConfig(**{**load_section(f"{variant}.yaml", "model")["net"], "pretrained_backbone": False}))
    net.load_state_dict(convert_official_state_dict(standin_state_dict(variant), net))
    for a, b in zip(net.state_dict().values(), model.net.state_dict().values()):
        assert torch.equal(a, b)


def test_any_hrnet_width_and_wrapped_official_files(tmp_path):
    """The variant comes from the tensor shapes (W48 here), DDP prefixes and wrappers are undone."""
    state = standin_state_dict("w48_coco")
    path = tmp_path / "w48.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = load_checkpoint(path)
    assert (model.net.config.backbone, model.net.config.heatmap_channels, model.spec.name) == ("hrnet_w48", 48, "coco")


def test_load_errors(tmp_path, small_model):
    path, _ = small_model
    with pytest.raises(
        ModelLoadError, match="predicts 17 keypoints .*'coco'.* chosen spec 'crowdpose' has 14"
    ):
        load_checkpoint(path, spec="crowdpose")
    official = write_standin_checkpoint("w32_crowdpose", tmp_path / "crowd.pth")
    with pytest.raises(ModelLoadError, match="predicts 14 keypoints .*chosen spec 'coco' has 17"):
        load_checkpoint(official, spec="coco")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(garbage)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="not a readable"):
        load_checkpoint(truncated)
    for name, content in (("random.onnx", bytes(range(256)) * 8), ("empty.onnx", b"")):
        onnx_file = tmp_path / name
        onnx_file.write_bytes(content)
        with pytest.raises(ModelLoadError, match=f"{name} is not a readable ONNX model"):
            load_checkpoint(onnx_file)
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ModelLoadError, match="not a DEKR checkpoint of a known format"):
        load_checkpoint(other)
    broken = dict(standin_state_dict("w32_crowdpose"))
    broken["stage2.0.extra.weight"] = torch.zeros(1)
    del broken["transition_offset.0.weight"]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ModelLoadError, match=r"broken.pth: official.*\n +missing: offset_head.transition.0.weight\n +unexpected: backbone.body.stage2.0.extra.weight"):
        load_checkpoint(tmp_path / "broken.pth")
    odd = tmp_path / "k5.ckpt"
    small_checkpoint(odd)
    raw = torch.load(odd, weights_only=False)
    raw["state_dict"]["net.extra"] = torch.zeros(1)
    torch.save(raw, odd)
    with pytest.raises(ModelLoadError, match="unexpected \\(1\\): extra"):
        load_checkpoint(odd)




def test_zoo_name_is_fetched_converted_once_and_cached(tmp_path, monkeypatch):
    """An official zoo entry (manual download): the placed files are converted once, with the entry's
    rescoring net, and later loads read the converted file only."""
    from dekr import zoo

    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.delenv(zoo.MIRROR_ENV, raising=False)
    with pytest.raises(ModelLoadError, match="pose_dekr_hrnetw32_crowdpose.pth"):
        load_checkpoint("dekr-w32-crowdpose")  # not there yet: the manual steps
    weights = zoo.download_path("dekr-w32-crowdpose")
    weights.parent.mkdir(parents=True, exist_ok=True)
    write_standin_checkpoint("w32_crowdpose", weights)
    rescore = zoo.download_path("dekr-w32-crowdpose", "rescore")
    rescore.write_bytes((FIXTURES / "reference" / "final_rescore_crowd_pose_kpt.pth").read_bytes())
    model = load_checkpoint("dekr-w32-crowdpose")
    assert model.spec.name == "crowdpose" and model.rescore is not None and model.source == "dekr-w32-crowdpose"
    assert zoo.converted_path("dekr-w32-crowdpose").is_file()
    weights.unlink()
    rescore.unlink()
    again = load_checkpoint("dekr-w32-crowdpose")
    for a, b in zip(model.net.state_dict().values(), again.net.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(again.rescore.l1.weight, model.rescore.l1.weight)


@pytest.mark.parametrize("layout", ["mmpose", "supergradients", "supergradients_bare"])
def test_peer_checkpoints_load_through_the_one_loader(tmp_path, layout):
    """The format is recognised from the content (a bare SuperGradients state dict is not taken for an
    official one), the network is built from the tensors, the peer's needs come with it."""
    from tests.helpers.official_standin import make_state_dict, mmpose_standin_state_dict, read_keys

    if layout == "mmpose":
        raw = {"meta": {"mmpose_version": "1.3.2"}, "state_dict": mmpose_standin_state_dict("w32_crowdpose")}
    else:
        state = make_state_dict(read_keys(FIXTURES / "reference" / "keys_sg_dekr_w32_no_dc.txt"), 0)
        raw = state if layout == "supergradients_bare" else {"net": state, "processing_params": {}}
    path = tmp_path / f"{layout}.pth"
    torch.save(raw, path)
    model = load_checkpoint(path)
    if layout == "mmpose":
        assert model.format == "mmpose" and model.spec.name == "crowdpose" and model.rescore is not None
        assert model.net.config.offset_block == "adaptive"
    else:
        assert model.format == "supergradients" and model.spec.name == "coco" and model.rescore is None
        cfg = model.net.config
        assert (cfg.offset_block, cfg.dilation, cfg.heatmap_activation) == ("basic", 5, "sigmoid")
        assert model.decode["channel_order"] == "bgr" and model.decode["resize"] == "letterbox"


def test_carried_rescoring_net_rescores_predictions(tmp_path):
    """The rescoring net an MMPose checkpoint carries changes the pose scores (official rule: net
    output x mean keypoint score) and nothing else."""
    import numpy as np

    from dekr.data.dataset import read_image_rgb
    from dekr.inference import DecodeConfig, predict_poses
    from tests.helpers.official_standin import mmpose_standin_state_dict

    path = tmp_path / "mmpose.pth"
    torch.save({"state_dict": mmpose_standin_state_dict("w32_coco")}, path)
    model = load_checkpoint(path)
    image = read_image_rgb(FIXTURES / "coco" / "000000000785.jpg")
    cfg = DecodeConfig.for_dataset(model.spec, input_size=128, flip_test=False, keypoint_threshold=0.0)
    plain = predict_poses(model.net, [image], model.spec, cfg)[0]
    rescored = predict_poses(model.net, [image], model.spec, cfg, rescore_net=model.rescore)[0]
    assert len(plain["scores"]) > 0
    np.testing.assert_array_equal(plain["keypoints"].numpy(), rescored["keypoints"].numpy())
    assert not torch.allclose(plain["scores"], rescored["scores"])
