"""RunCosts: FLOPs counted as by hand and as in the DEKR paper, and ``metrics.json``'s ``costs`` of a
real fit, of its resumed continuation and of a failed run; Lightning's summary shows FLOPs."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from dekr.callbacks import EpochHistory, RunCosts
from dekr.callbacks.run_costs import COST_KEYS, forward_flops
from dekr.data.datamodule import DEKRDataModule
from dekr.data.synthetic import SyntheticConfig
from dekr.models.adaptive_conv import AdaptiveConv2d
from dekr.models.dekr import DEKRNet, DEKRNetConfig
from tests.helpers.modules import tiny_module


def test_forward_flops_count_a_multiply_add_as_two() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 4, 1), nn.Flatten(), nn.Linear(4 * 16 * 16, 10))
    net[1].eval()  # a mode of the caller's: kept
    multiply_adds = (8 * 3 * 9 * 16 * 16  # 3x3 conv, 16x16 output
                     + 4 * 8 * 16 * 16  # 1x1 conv (its bias not counted)
                     + 4 * 16 * 16 * 10)  # linear (nor its bias)
    assert forward_flops(net, torch.zeros(1, 3, 16, 16)) == 2 * multiply_adds
    assert net.training and not net[1].training and net[0].training


def test_w32_gflops_are_twice_the_papers_multiply_adds() -> None:
    """HRNet-W32 DEKR: the paper's 45.4 "GFLOPs" at 512x512 are multiply-adds, FlopCounterMode counts
    2 per multiply-add. Counted at 64x64: the count is exactly proportional to the area for sizes
    that are multiples of 32 (512 itself: the slow test below). The adaptive convolutions' product
    is a bmm FlopCounterMode counts on the grid_sample backend; torchvision's deform_conv2d is counted
    as the same convolution (dekr's formula for it), so both backends count alike, and counting it
    adds exactly the deformable convolutions' multiply-adds."""
    size = 64
    deform_multiply_adds = 17 * 15 * 15 * 9 * (size // 4) ** 2 * 2  # K branches, 15 -> 15 ch, 3x3, 2 blocks
    net = DEKRNet(DEKRNetConfig(adaptive_backend="grid_sample"))
    flops = {"grid_sample": forward_flops(net, torch.zeros(1, 3, size, size))}
    for block in net.modules():
        if isinstance(block, AdaptiveConv2d):
            block.backend = "torchvision"
    flops["torchvision"] = forward_flops(net, torch.zeros(1, 3, size, size))
    assert flops["grid_sample"] == flops["torchvision"]
    with FlopCounterMode(display=False) as without_formula, torch.no_grad():
        net.eval().forward(torch.zeros(1, 3, size, size))
    assert flops["torchvision"] - without_formula.get_total_flops() == 2 * deform_multiply_adds
    gflops_512 = flops["grid_sample"] * (512 // size) ** 2 / 1e9
    assert gflops_512 == pytest.approx(90.81, abs=0.01)
    # the DEKR paper's COCO tables: HRNet-W32 at 512, 29.6M parameters, 45.4 GFLOPs
    assert gflops_512 / 2 == pytest.approx(45.4, abs=0.05)
    assert sum(p.numel() for p in net.parameters()) / 1e6 == pytest.approx(29.6, abs=0.05)


@pytest.mark.slow
def test_w32_gflops_at_512() -> None:
    net = DEKRNet(DEKRNetConfig())
    assert forward_flops(net, torch.zeros(1, 3, 512, 512)) / 1e9 == pytest.approx(90.81, abs=0.01)


def _data() -> DEKRDataModule:
    # one training and one validation batch per epoch
    return DEKRDataModule(dataset="synthetic", input_size=64, batch_size=2, val_batch_size=2, num_workers=0,
                          pin_memory=False, synthetic=SyntheticConfig(num_train=2, num_val=2, image_size=64))


def _fit(root: Path, max_epochs: int, ckpt_path: str | None = None, **kwargs) -> L.Trainer:
    checkpoint = ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, save_top_k=0)
    trainer = L.Trainer(default_root_dir=root, accelerator="cpu", devices=1, max_epochs=max_epochs,
                        enable_progress_bar=False, num_sanity_val_steps=0, log_every_n_steps=1,
                        callbacks=[RunCosts(), EpochHistory(), checkpoint], **kwargs)
    trainer.fit(tiny_module(), datamodule=_data(), ckpt_path=ckpt_path)
    return trainer


def test_a_fit_writes_its_costs_and_a_resumed_one_adds_its_time(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "run"
    # Lightning stops its logger propagating when it is imported before any root handler exists
    # (which depends on what other test modules imported first): let caplog see the summary anyway
    lightning_log = logging.getLogger("lightning.pytorch")
    propagate, lightning_log.propagate = lightning_log.propagate, True
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        try:
            trainer = _fit(root, 1, logger=CSVLogger(tmp_path, name="csv", version=0))
        finally:
            lightning_log.propagate = propagate
    assert trainer.lightning_module.example_input_array.shape == (1, 3, 64, 64)  # the data's input size
    first = json.loads((root / "metrics.json").read_text())["costs"]
    assert tuple(first) == COST_KEYS
    module = tiny_module()
    assert first["parameters"] == first["trainable_parameters"] == sum(p.numel() for p in module.parameters())
    assert first["input_size"] == [64, 64]
    assert first["gflops"] == forward_flops(module.net, torch.zeros(1, 3, 64, 64)) / 1e9 > 0
    for key in ("train_images_per_s", "inference_images_per_s", "peak_memory_mb", "wall_time_s"):
        assert first[key] > 0, key
    assert first["memory_kind"] == "cpu_max_rss" and first["device"].startswith("cpu")
    # Lightning's summary forwards example_input_array: real FLOPs, not "0 Total Flops"
    summary = next(r.getMessage() for r in caplog.records if "Total Flops" in r.getMessage())
    total = next(line for line in summary.splitlines() if "Total Flops" in line).split()
    assert total[0] != "0", summary
    # the costs also went to the logger, once
    logged = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "cost/gflops" in logged.splitlines()[0]

    trainer = _fit(root, 2, ckpt_path=str(root / "checkpoints" / "last.ckpt"), logger=False,
                   enable_model_summary=False)
    resumed = json.loads((root / "metrics.json").read_text())
    assert resumed["epochs"] == 2 and resumed["costs"]["wall_time_s"] > first["wall_time_s"]
    assert resumed["costs"]["gflops"] == first["gflops"]
    run_costs = next(c for c in trainer.callbacks if isinstance(c, RunCosts))
    # the throughputs are over both sessions: 2 epochs of 2 training and 2 validation images
    assert (run_costs.train_images, run_costs.inference_images) == (4, 4)


class _FailAtStep(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 3:
            raise RuntimeError("a failure")


def test_a_failed_run_keeps_its_costs_and_no_run_costs_gives_none(tmp_path: Path) -> None:
    def fit(root: Path, *callbacks: L.Callback) -> dict:
        trainer = L.Trainer(default_root_dir=root, max_epochs=2, limit_train_batches=4, limit_val_batches=2,
                            callbacks=[*callbacks, EpochHistory()], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
        with pytest.raises(RuntimeError, match="a failure"):
            trainer.fit(BoringModel())
        return json.loads((root / "metrics.json").read_text())

    failed = fit(tmp_path / "a", RunCosts(), _FailAtStep())
    costs = failed["costs"]
    assert failed["status"] == "failed" and tuple(costs) == COST_KEYS
    assert costs["parameters"] == 66 and costs["train_images_per_s"] > 0 and costs["wall_time_s"] > 0
    assert costs["gflops"] is None and costs["input_size"] is None  # BoringModel: no input size known
    assert costs["inference_images_per_s"] is None  # no validation ran
    assert fit(tmp_path / "b", _FailAtStep())["costs"] == dict.fromkeys(COST_KEYS)
