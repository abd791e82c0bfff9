"""Offset blocks as plug-ins: the shipped names, a user's block by class path (net config and CLI),
each block's own official init, the deformable block, and the official variants unchanged."""
from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dekr.dataclass_config import ConfigError
from dekr.models.dekr import DEKRNet, DEKRNetConfig, init_official_
from dekr.models.heads import OffsetHead
from dekr.models.offset_blocks import resolve_offset_block, shipped_block_names
from dekr.models.offset_blocks.adaptive import AdaptiveBlock
from dekr.models.offset_blocks.basic import BasicBlock
from dekr.models.offset_blocks.deformable import DeformableBlock
from tests.models.user_offset_block import SeparableBlock
from tests.scripts.train_helpers import TINY_ARGS, clean_env, run_train, train_in_process

SMALL = {"backbone": "hrnet_w18_small", "heatmap_channels": 8, "offset_channels_per_keypoint": 4,
         "offset_blocks": 1}
USER_BLOCK = "tests.models.user_offset_block.SeparableBlock"
DEFORMABLE = "dekr.models.offset_blocks.deformable.DeformableBlock"
MODULATED = {"class_path": DEFORMABLE, "init_args": {"modulated": True}}
SHIPPED = {"adaptive": AdaptiveBlock, "basic": BasicBlock, "deformable": DeformableBlock}


def randomise_(module: nn.Module) -> None:
    """Every parameter drawn from N(0, 0.1): offsets that move the taps, branches that differ."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(std=0.1)


def test_shipped_names_are_the_modules_of_the_package() -> None:
    assert shipped_block_names() == ["adaptive", "basic", "deformable"]
    for name, cls in SHIPPED.items():
        assert resolve_offset_block(name) == (cls, {})
        assert resolve_offset_block(f"{cls.__module__}.{cls.__name__}") == (cls, {})  # the same class by path
    assert resolve_offset_block(MODULATED) == (DeformableBlock, {"modulated": True})


@pytest.mark.parametrize("block", ["adaptive", "basic", "deformable", MODULATED, USER_BLOCK],
                         ids=["adaptive", "basic", "deformable", "modulated", "user"])
@pytest.mark.parametrize("disentangled", [True, False], ids=["disentangled", "shared"])
def test_offset_head_builds_every_block_for_both_layouts(block, disentangled: bool) -> None:
    k, c = 3, 4
    head = OffsetHead(16, k, c, num_blocks=2, block=block, disentangled=disentangled, dilation=2).eval()
    groups = k if disentangled else 1
    cls, _ = resolve_offset_block(block)
    assert len(head.blocks) == 2
    for b in head.blocks:
        assert type(b) is cls and (b.groups, b.channels_per_group, b.dilation) == (groups, k * c // groups, 2)
    x = torch.randn(2, k * c, 9, 11)
    with torch.no_grad():
        assert head.blocks[0](x).shape == (2, k * c, 9, 11)
        assert head(torch.randn(2, 16, 9, 11)).shape == (2, 2 * k, 9, 11)


@pytest.mark.parametrize("block", ["adaptive", "basic", "deformable", MODULATED, USER_BLOCK],
                         ids=["adaptive", "basic", "deformable", "modulated", "user"])
def test_disentangled_branches_stay_apart(block) -> None:
    """With groups=K a block must not mix keypoints: changing branch 0's input changes branch 0's
    output only (random offsets, so that the deformable taps really move)."""
    cls, init_args = resolve_offset_block(block)
    groups, c = 3, 4
    b = cls(c, groups, dilation=1, backend="grid_sample", **init_args).eval()
    randomise_(b)
    x = torch.randn(1, groups * c, 8, 8)
    changed = x.clone()
    changed[:, :c] += torch.randn(1, c, 8, 8)
    with torch.no_grad():
        y, y_changed = b(x), b(changed)
    assert not torch.allclose(y[:, :c], y_changed[:, :c])
    torch.testing.assert_close(y[:, c:], y_changed[:, c:], rtol=0, atol=1e-6)


def test_user_block_by_class_path_from_the_net_config() -> None:
    cfg = DEKRNetConfig.from_dict({**SMALL, "num_keypoints": 5, "offset_blocks": 2,
                                   "offset_block": USER_BLOCK})
    net = DEKRNet(cfg)
    assert [type(b) for b in net.offset_head.blocks] == [SeparableBlock, SeparableBlock]
    assert net.offset_head.blocks[0].depthwise.out_channels == 5 * 4
    # The block's own official init ran after the generic one (which sets every BN scale to 1).
    for b in net.offset_head.blocks:
        assert torch.count_nonzero(b.bn2.weight) == 0 and torch.all(b.bn1.weight == 1)
        assert abs(b.depthwise.weight.std().item() - 0.001) < 0.0003  # the generic N(0, 0.001) reached it
    _, offsets = net.eval()(torch.randn(1, 3, 64, 64))
    assert offsets.shape == (1, 10, 16, 16)
    # Its own option through the mapping form.
    wide = DEKRNet(DEKRNetConfig.from_dict({**SMALL, "num_keypoints": 5, "offset_block": {
        "class_path": USER_BLOCK, "init_args": {"expansion": 2}}}))
    assert wide.offset_head.blocks[0].depthwise.out_channels == 2 * 5 * 4


@pytest.mark.parametrize("value,message", [
    ("fancy", "model.net.offset_block='fancy': no such offset block; shipped: adaptive, basic, deformable"),
    ("nopkg.blocks.Block", "model.net.offset_block='nopkg.blocks.Block': no module 'nopkg.blocks'"),
    ("tests.models.user_offset_block.Missing", "user_offset_block' has no 'Missing'"),
    ("tests.models.user_offset_block.NotABlock", "NotABlock'> is not a subclass of dekr.models"),
    ("torch.nn.Conv2d", "'torch.nn.Conv2d': .* is not a subclass of dekr.models.offset_blocks.OffsetBlock"),
    ({"class_path": "deformable", "init_args": {"modulated": True}},
     r"mapping form, class_path is a full class path \(" + DEFORMABLE + r"\)"),
    ({"class_path": DEFORMABLE, "init_args": {"bogus": 1}}, "DeformableBlock refuses init_args {'bogus': 1}"),
    ({"class_path": DEFORMABLE, "init_args": {"groups": 2}},
     r"init_args \['groups'\] are set by the network"),
    ({"path": DEFORMABLE}, "a mapping takes class_path"),
    ("", "must be a block name or class path"),
])
def test_bad_offset_block_names_the_option_and_the_value(value, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        DEKRNet(DEKRNetConfig(**SMALL, offset_block=value))
    assert str(caught.value).startswith("model.net.offset_block")


def test_a_module_that_fails_to_import_keeps_its_own_error(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's module that is there but imports something that is not: their bug, with its
    traceback, not a config error."""
    (tmp_path / "broken_blocks.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_blocks", raising=False)
    with pytest.raises(ModuleNotFoundError) as caught:
        resolve_offset_block("broken_blocks.MyBlock")
    assert not isinstance(caught.value, ConfigError) and caught.value.name == "no_such_dependency_xyz"


# ------------------------------------------------------------------------------------ deformable
@pytest.mark.parametrize("modulated", [False, True], ids=["plain", "modulated"])
@pytest.mark.parametrize("dilation", [1, 2])
def test_official_init_keeps_the_deformable_offsets_zero(modulated: bool, dilation: int) -> None:
    """After the network's official init the offset (and mask) convs are still zero, so a fresh
    block is relu(bn(3x3 conv(x)) + x) with its deformable weight (x sigmoid(0) = 0.5 when modulated)."""
    torch.manual_seed(0)
    block = {"class_path": DEFORMABLE, "init_args": {"modulated": modulated}}
    net = DEKRNet(DEKRNetConfig(**{**SMALL, "offset_blocks": 2}, num_keypoints=3, dilation=dilation,
                                offset_block=block))
    other_convs = [m for m in net.offset_head.modules() if isinstance(m, nn.Conv2d)]
    for b in net.offset_head.blocks:
        predictors = [b.offset_conv] + ([b.mask_conv] if modulated else [])
        assert (b.mask_conv is not None) == modulated
        for conv in predictors:
            assert torch.count_nonzero(conv.weight) == 0 and torch.count_nonzero(conv.bias) == 0
            other_convs.remove(conv)
        assert torch.all(b.bn.weight == 1) and torch.all(b.bn.bias == 0)
    # ... while the generic init reached the head's other convs (which it would the predictors).
    weights = torch.cat([m.weight.detach().flatten() for m in other_convs])
    assert abs(weights.std().item() - 0.001) < 0.0002
    block = net.offset_head.blocks[0].eval()
    x = torch.randn(2, 3 * 4, 10, 7)
    scale = 0.5 if modulated else 1.0
    with torch.no_grad():
        plain = F.conv2d(x, block.deform_conv.weight, padding=dilation, dilation=dilation, groups=3) * scale
        assert (plain.abs().max() > 0.1)
        offset = block.offset_conv(x)
        mask = torch.sigmoid(block.mask_conv(x)) if modulated else None
        torch.testing.assert_close(block.deform_conv(x, offset, mask), plain, rtol=1e-5, atol=1e-6)
        bn = block.bn
        expected = torch.relu(F.batch_norm(plain, bn.running_mean, bn.running_var, bn.weight, bn.bias) + x)
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-6)


def test_deformable_block_zeroes_its_offsets_under_any_init() -> None:
    """The block's own default (as DCN implementations do): zero offsets with ``init: pytorch`` too,
    and again after :func:`init_official_` on a block whose predictors have moved."""
    net = DEKRNet(DEKRNetConfig(**SMALL, init="pytorch", offset_block="deformable"))
    block = net.offset_head.blocks[0]
    assert torch.count_nonzero(block.offset_conv.weight) == 0
    assert block.deform_conv.weight.std() > 0.01  # torchvision's kaiming-uniform, not N(0, 0.001)
    randomise_(block)
    init_official_(net)
    for tensor in (block.offset_conv.weight, block.offset_conv.bias):
        assert torch.count_nonzero(tensor) == 0


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine two threads made this training 4x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_deformable_block_learns_offsets_in_a_short_training(one_thread: None) -> None:
    """A tiny DEKR with one deformable block per branch, 60 Adam steps on two synthetic batches
    (25-40 s on one thread): both losses fall clearly and the offset conv leaves zero, predicting
    offsets of a fraction of a pixel on average (measured: losses 0.039 -> 0.004 heatmap and
    0.078 -> 0.046 offsets, mean |offset| 0.23 px, up to 9 px)."""
    from dekr.data.datamodule import DEKRDataModule
    from dekr.losses import LossConfig, dekr_loss

    torch.manual_seed(0)
    data = DEKRDataModule(dataset="synthetic", spec="coco", input_size=64, batch_size=4, num_workers=0,
                          persistent_workers=False, augmentation={"flip_prob": 0.0}, min_center_area=16.0,
                          synthetic={"num_train": 8, "num_val": 4, "image_size": 96, "max_people": 1})
    data.setup("fit")
    batches = [data.on_after_batch_transfer(b, 0) for b in data.train_dataloader()]
    assert len(batches) == 2 and all(b["offset_weight"].sum() > 0 for b in batches)
    net = DEKRNet(DEKRNetConfig(**SMALL, offset_block="deformable")).train()
    block = net.offset_head.blocks[0]
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    history = []
    for _, batch in zip(range(60), itertools.cycle(batches)):
        heatmaps, offsets = net(batch["image"])
        losses = dekr_loss(heatmaps, offsets, batch, LossConfig(offset_factor=1.0))
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append((losses["heatmap_loss"].item(), losses["offset_loss"].item()))
    first = torch.tensor(history[:2]).mean(0)
    last = torch.tensor(history[-6:]).mean(0)
    assert last[0] < 0.3 * first[0], history
    assert last[1] < 0.8 * first[1], history
    assert block.offset_conv.weight.abs().max() > 0.01
    with torch.no_grad():
        predicted = block.offset_conv(net.offset_head.transition(net.backbone(batches[0]["image"])))
    assert predicted.abs().mean() > 0.05  # pixels: the taps have left the regular grid


# ------------------------------------------------------------------------------ official variants
# Measured before offset blocks became plug-ins (W32, K=17): the official numbers stay.
@pytest.mark.parametrize("block,disentangled,expected", [
    ("adaptive", True, 29_561_182), ("basic", True, 29_603_308),
    ("adaptive", False, 30_670_750), ("basic", False, 31_814_668),
])
def test_w32_parameter_counts_and_keys_unchanged(block: str, disentangled: bool, expected: int) -> None:
    net = DEKRNet(DEKRNetConfig(offset_block=block, disentangled=disentangled))
    assert sum(p.numel() for p in net.parameters()) == expected
    keys = {k for k in net.state_dict() if k.startswith("offset_head.blocks.0.")}
    if block == "adaptive":
        names = [f"adapt_conv.{conv}.{p}" for conv in ("transform_matrix_conv", "translation_conv")
                 for p in ("weight", "bias")] + ["adapt_conv.weight"]
        names += [f"bn.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    else:
        names = ["conv1.weight", "conv2.weight"] + [f"{bn}.{p}" for bn in ("bn1", "bn2") for p in
                                                    ("weight", "bias", "running_mean", "running_var",
                                                     "num_batches_tracked")]
    assert keys == {f"offset_head.blocks.0.{n}" for n in names}


def test_w32_deformable_parameter_count() -> None:
    """Per block and keypoint (c = 15): offset conv 18 x (15 x 9) + 18, deformable weight 15 x 15 x 9,
    BN 2 x 15; the adaptive block's: 6 x (15 x 9) + 6 predictors, the same weight and BN. Two blocks,
    17 keypoints."""
    net = DEKRNet(DEKRNetConfig(offset_block="deformable"))
    extra_per_branch = (18 - 6) * (15 * 9) + (18 - 6)
    assert sum(p.numel() for p in net.parameters()) == 29_561_182 + 2 * 17 * extra_per_branch


# ------------------------------------------------------------------------------------- the CLI
def test_bad_class_path_on_the_command_line_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--config", "demo.yaml", "--trainer.logger", "false",
            "--model.net.offset_block", "nopkg.blocks.MyBlock"]
    code, stderr = train_in_process(args, tmp_path, monkeypatch, capsys)
    assert code == 2
    assert ("error: model.net.offset_block='nopkg.blocks.MyBlock': no module 'nopkg.blocks'" in stderr
            and "Traceback" not in stderr)


@pytest.mark.slow
def test_user_block_by_class_path_through_the_training_script(tmp_path: Path) -> None:
    """``--model.net.offset_block tests.models.user_offset_block.SeparableBlock`` on the real command
    line: the run trains the user's block, its checkpoint names it and loads again."""
    from dekr.checkpoint import load_checkpoint

    root = tmp_path / "run"
    run_train([*TINY_ARGS, "--model.net.offset_block", USER_BLOCK, "--trainer.max_epochs", "1",
               "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
               "--pose_images.num_images", "0", "--trainer.default_root_dir", str(root)],
              cwd=tmp_path, env=clean_env(WANDB_MODE="disabled"))
    assert f"offset_block: {USER_BLOCK}" in (root / "config.yaml").read_text()
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["net"]["offset_block"] == USER_BLOCK
    trained = ckpt["state_dict"]["net.offset_head.blocks.0.bn2.weight"]
    assert torch.count_nonzero(trained) > 0  # zero-initialised by the block, then trained
    loaded = load_checkpoint(str(root / "checkpoints" / "last.ckpt")).net
    assert type(loaded.offset_head.blocks[0]) is SeparableBlock
    assert torch.equal(loaded.offset_head.blocks[0].bn2.weight, trained)
