"""DEKRModule: optimisation config, NaN stop, atomic checkpoints, resume checks, fine-tuning transfer."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from dekr.callbacks import AtomicCheckpointIO
from dekr.checkpoint import IncompatibleCheckpointError, save_module_checkpoint
from dekr.data.spec import load_spec
from dekr.finetune import transfer_from_file
from dekr.models.dekr import DEKRNet, DEKRNetConfig
from dekr.module import DEKRModule, OptimConfig
from tests.helpers.modules import TINY, tiny_module, trainer

def fake_batches(n_batches: int = 2, n: int = 2, k: int = 17, s: int = 64, nan_at: int | None = None):
    g = torch.Generator().manual_seed(0)
    r = s // 4
    out = []
    for i in range(n_batches):
        image = torch.randn(n, 3, s, s, generator=g)
        if i == nan_at:
            image[0, 0, 0, 0] = float("nan")
        out.append({"image": image, "heatmap": torch.rand(n, k + 1, r, r, generator=g),
                    "heatmap_weight": torch.ones(n, k + 1, r, r), "offset": torch.randn(n, 2 * k, r, r, generator=g),
                    "offset_weight": (torch.rand(n, 2 * k, r, r, generator=g) > 0.9).float(),
                    "image_id": torch.arange(n) + 100 * i})
    return out


def loader(batches):
    return DataLoader(batches, batch_size=None)


def test_optimizer_groups_and_schedule() -> None:
    module = tiny_module(optim=OptimConfig(lr=1e-3, backbone_lr_mult=0.1, milestones=[2, 4], gamma=0.5))
    cfg = module.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["weight_decay"] == 0.0
    assert [g["lr"] for g in opt.param_groups] == [1e-3, pytest.approx(1e-4)]
    n_params = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_params == sum(p.numel() for p in module.parameters())
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    assert isinstance(tiny_module(optim={"optimizer": "sgd"}).configure_optimizers()["optimizer"], torch.optim.SGD)
    with pytest.raises(ValueError, match="adam, adamw or sgd"):
        tiny_module(optim={"optimizer": "lamb"}).configure_optimizers()
    with pytest.raises(ValueError, match="unknown OptimConfig option"):
        tiny_module(optim={"lr_max": 1.0})


def test_frozen_backbone_gets_no_gradient_and_keeps_bn_statistics() -> None:
    module = tiny_module(optim={"freeze_backbone": True}).train()
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert len(groups) == 1  # heads only
    assert not module.net.backbone.training and module.net.heatmap_head.training


def test_training_layout_validation_gives_a_loss(tmp_path: Path) -> None:
    module = tiny_module()
    t = trainer(tmp_path, max_epochs=1, enable_checkpointing=False)
    t.fit(module, loader(fake_batches()), loader(fake_batches(1)))
    assert "val/loss" in t.callback_metrics and torch.isfinite(t.callback_metrics["val/loss"])


def test_nan_loss_stops_with_image_ids_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    module = tiny_module()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    t = trainer(tmp_path, max_epochs=1, callbacks=[ckpt])
    t.fit(module, loader(fake_batches()))
    last = tmp_path / "ckpt" / "last.ckpt"
    before = last.read_bytes()
    t2 = trainer(tmp_path, max_epochs=2, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True,
                                                                     save_top_k=0)])
    with pytest.raises(FloatingPointError, match=r"image ids \[100, 101\]"):
        t2.fit(tiny_module(), loader(fake_batches(nan_at=1)), ckpt_path=str(last))
    assert last.read_bytes() == before
    assert torch.load(last, weights_only=False)["global_step"] == 2  # the end of the good epoch


def test_failed_atomic_save_leaves_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"a": torch.ones(3)}, path)
    good = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"a": torch.zeros(3)}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind


def test_resume_from_incompatible_checkpoint_names_the_fields(tmp_path: Path) -> None:
    other = DEKRModule(net=DEKRNetConfig(num_keypoints=14, **{**TINY, "heatmap_channels": 16}), spec="crowdpose")
    t = trainer(tmp_path, max_epochs=1, callbacks=[ModelCheckpoint(dirpath=tmp_path / "c", save_last=True)])
    t.fit(other, loader(fake_batches(k=14)))
    t2 = trainer(tmp_path, max_epochs=2, enable_checkpointing=False)
    with pytest.raises(IncompatibleCheckpointError) as err:
        t2.fit(tiny_module(), loader(fake_batches()), ckpt_path=str(tmp_path / "c" / "last.ckpt"))
    message = str(err.value)
    assert "net.num_keypoints: checkpoint 14 vs config 17" in message
    assert "net.heatmap_channels: checkpoint 16 vs config 8" in message
    assert "spec: checkpoint 'crowdpose' vs config 'coco'" in message and "init_from" in message


def test_finetune_coco_to_crowdpose_remaps_heads_by_name(tmp_path: Path) -> None:
    source = tiny_module()
    path = save_module_checkpoint(source, tmp_path / "coco.ckpt")
    net = DEKRNet(DEKRNetConfig(num_keypoints=14, **TINY))
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    report = transfer_from_file(net, path, "crowdpose")
    coco, crowd = load_spec("coco").keypoint_names, load_spec("crowdpose").keypoint_names
    src, dst = source.net.state_dict(), net.state_dict()
    for j, name in enumerate(crowd):
        hm_rows, off_rows = dst["heatmap_head.final.weight"][j], dst["offset_head.final.weight"][2 * j:2 * j + 2]
        block = dst["offset_head.blocks.0.adapt_conv.weight"][4 * j:4 * j + 4]
        if name in coco:
            i = coco.index(name)
            assert torch.equal(hm_rows, src["heatmap_head.final.weight"][i])
            assert torch.equal(off_rows, src["offset_head.final.weight"][2 * i:2 * i + 2])
            assert torch.equal(block, src["offset_head.blocks.0.adapt_conv.weight"][4 * i:4 * i + 4])
        else:  # head, neck: fresh
            assert torch.equal(hm_rows, fresh["heatmap_head.final.weight"][j])
    # the center row comes last on both sides
    assert torch.equal(dst["heatmap_head.final.weight"][14], src["heatmap_head.final.weight"][17])
    for key in dst:
        if key.startswith("backbone."):
            assert torch.equal(dst[key], src[key])
    assert report.new_keypoints == ["head", "neck"] and len(report.matched_keypoints) == 12
    assert not report.fresh and "heatmap_head.final.weight" in report.remapped
    text = report.format()
    assert "new keypoints, fresh (2): head, neck" in text and "remapped by keypoint" in text


def test_finetune_from_official_checkpoint_with_other_backbone(tmp_path: Path) -> None:
    from tests.helpers.official_standin import write_standin_checkpoint

    official = write_standin_checkpoint("w32_crowdpose", tmp_path / "pose_dekr_hrnetw32_crowdpose.pth")
    net = DEKRNet(DEKRNetConfig(num_keypoints=17, backbone="hrnet_w32"))
    report = transfer_from_file(net, official, "coco")
    assert sorted(report.new_keypoints) == ["left_ear", "left_eye", "nose", "right_ear", "right_eye"]
    assert not report.fresh and not report.unused
    small = DEKRNet(DEKRNetConfig(num_keypoints=17, **TINY))
    report = transfer_from_file(small, official, "coco")
    assert any(k.startswith("backbone.") for k in report.fresh) and report.unused  # shapes differ: fresh


def test_init_from_applies_at_fit_start_but_not_on_resume(tmp_path: Path) -> None:
    source = tiny_module()
    with torch.no_grad():
        source.net.heatmap_head.final.bias.fill_(7.0)
    path = save_module_checkpoint(source, tmp_path / "src.ckpt")
    module = tiny_module(init_from=str(path), optim={"lr": 0.0})
    t = trainer(tmp_path, max_epochs=1, callbacks=[ModelCheckpoint(dirpath=tmp_path / "c", save_last=True)])
    t.fit(module, loader(fake_batches()))
    assert module.transfer_report is not None
    assert torch.allclose(module.net.heatmap_head.final.bias, torch.full((18,), 7.0))
    path.unlink()  # a resume must not need the init file any more
    resumed = tiny_module(init_from=str(path))
    trainer(tmp_path, max_epochs=2, enable_checkpointing=False).fit(
        resumed, loader(fake_batches()), ckpt_path=str(tmp_path / "c" / "last.ckpt"))
    assert resumed.transfer_report is None


def test_fine_tuning_reads_no_imagenet_weights(tmp_path: Path) -> None:
    # init_from brings the whole network: the ImageNet file (absent here) is neither needed nor read
    source = tiny_module()
    path = save_module_checkpoint(source, tmp_path / "src.ckpt")
    absent = tmp_path / "hrnet_w18_small_imagenet.pth"
    module = DEKRModule(net=DEKRNetConfig(num_keypoints=17, **TINY, pretrained_backbone=str(absent)),
                        init_from=str(path), optim={"lr": 0.0})
    trainer(tmp_path, max_epochs=1, enable_checkpointing=False).fit(module, loader(fake_batches()))
    assert module.transfer_report is not None and not module.transfer_report.fresh
    assert torch.equal(module.net.backbone.body.conv1.weight, source.net.backbone.body.conv1.weight)


def test_state_dict_holds_each_tensor_once_under_net() -> None:
    module = tiny_module()
    keys = set(module.state_dict())
    assert keys == {f"net.{k}" for k in module.net.state_dict()}


def test_compile_keeps_parameter_names_and_outputs() -> None:
    # nn.Module.compile compiles in place: the state dict (hence every checkpoint) keeps its keys.
    # The "eager" backend checks graph capture without code generation (seconds, not minutes).
    torch.manual_seed(0)
    plain = tiny_module()
    compiled = tiny_module(compile=True, compile_options={"backend": "eager"})
    compiled.load_state_dict(plain.state_dict())
    compiled.configure_model()
    assert compiled.net._compiled_call_impl is not None
    assert set(compiled.state_dict()) == set(plain.state_dict())
    images = torch.randn(1, 3, 64, 64)
    plain.eval(), compiled.eval()
    with torch.no_grad():
        for got, want in zip(compiled(images), plain(images)):
            torch.testing.assert_close(got, want)


def test_imagenet_backbone_is_loaded_when_a_fit_starts_from_scratch_only(tmp_path: Path) -> None:
    """pretrained_backbone: a module built to evaluate or resume never reads the ImageNet file; a
    fresh fit loads it (after the official init), and a resumed fit keeps the checkpoint's weights."""
    import timm

    imagenet = timm.create_model("hrnet_w18_small", pretrained=False)  # the classification model's layout
    with torch.no_grad():
        for tensor in imagenet.state_dict().values():
            if tensor.is_floating_point():
                tensor.uniform_(-1, 1)
    weights = tmp_path / "hrnet_w18_small_imagenet.pth"
    torch.save(imagenet.state_dict(), weights)
    module = DEKRModule(net=DEKRNetConfig(**TINY, pretrained_backbone=str(weights)))
    assert module.hparams["net"]["pretrained_backbone"] == str(weights)
    conv1 = module.net.backbone.body.conv1.weight
    assert conv1.std().item() == pytest.approx(0.001, rel=0.2)  # official init, not the ImageNet weights yet
    fit = trainer(tmp_path / "fit", max_epochs=1, limit_train_batches=1, limit_val_batches=0)
    fit.fit(module, train_dataloaders=loader(fake_batches(1)))
    # one Adam step (lr 1e-3) moved the weights by at most ~lr from the loaded ImageNet values
    assert torch.allclose(module.net.backbone.body.conv1.weight, imagenet.conv1.weight, atol=2e-3)
    ckpt = tmp_path / "fit" / "last.ckpt"
    fit.save_checkpoint(ckpt)
    weights.unlink()  # neither evaluation nor a resumed fit reads it again
    restored = DEKRModule.load_from_checkpoint(ckpt, map_location="cpu")
    assert torch.equal(restored.net.backbone.body.conv1.weight, module.net.backbone.body.conv1.weight)
    resumed = trainer(tmp_path / "resume", max_epochs=2, limit_train_batches=1, limit_val_batches=0)
    resumed.fit(DEKRModule(net=DEKRNetConfig(**TINY, pretrained_backbone=str(weights))),
                train_dataloaders=loader(fake_batches(1)), ckpt_path=ckpt)
    assert resumed.current_epoch == 2


def test_decode_options_are_checked_when_the_module_is_built(tmp_path: Path) -> None:
    """A misspelt ``model.decode`` option stops the run at start, not at the first validation;
    from_checkpoint lays the caller's options over the checkpoint's."""
    from dekr.dataclass_config import ConfigError

    with pytest.raises(ConfigError, match=r"^model.decode: unknown decode option\(s\) \['flip'\]"):
        tiny_module(decode={"flip": False})
    module = tiny_module(decode={"flip_test": False, "scales": [1, 0.5]})
    cfg = module.decode_config()
    assert cfg.flip_test is False and cfg.scales == (1.0, 0.5) and cfg.nms_num_thre == 8  # option; spec value
    path = save_module_checkpoint(tiny_module(decode={"flip_test": False, "input_size": 128}), tmp_path / "m.ckpt")
    loaded = DEKRModule.from_checkpoint(str(path), decode={"input_size": 256})
    assert loaded.decode_options == {"flip_test": False, "input_size": 256}
    with pytest.raises(ConfigError, match=r"^from_checkpoint\(decode=...\): decode option 'input_size' must be int"):
        DEKRModule.from_checkpoint(str(path), decode={"input_size": "256"})
