"""scripts/train.py: a real (tiny) run, its outputs, exact resume, W&B offline, bad input; the same
run folder from a plain Python Trainer with the library defaults."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import lightning as L
import pytest
import torch

from dekr.callbacks import AtomicCheckpointIO
from dekr.data.datamodule import DEKRDataModule
from dekr.data.synthetic import SyntheticConfig
from dekr.data.transforms import AugmentationConfig
from dekr.models.dekr import DEKRNetConfig
from dekr.module import DEKRModule
from dekr.training import trainer_kwargs
from tests.scripts.train_helpers import TINY_ARGS, clean_env, run_train, train_in_process
from tests.scripts.wandb_reader import history


#: What an earlier run left in the tiny run's configured folder (demo.yaml's runs/demo).
EARLIER_METRICS = '{"status": "finished", "best_score": 0.5}'


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The tiny demo, 2 epochs, started where ``runs/demo`` (its config's folder) holds an earlier run:
    it runs in ``runs/demo-2``."""
    cwd = tmp_path_factory.mktemp("train")
    (cwd / "runs" / "demo").mkdir(parents=True)
    (cwd / "runs" / "demo" / "metrics.json").write_text(EARLIER_METRICS)
    result = run_train([*TINY_ARGS, "--trainer.max_epochs", "2"], cwd=cwd)
    return cwd / "runs" / "demo-2", result


def test_run_writes_config_checkpoints_and_metrics(tiny_run) -> None:
    root, result = tiny_run
    config = (root / "config.yaml").read_text()
    assert "hrnet_w18_small" in config and "input_size: 64" in config  # resolved, overrides included
    assert (root / "checkpoints" / "last.ckpt").is_file()
    best = list((root / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["monitor"] == "val/AP" and metrics["epochs"] == 2
    for key in ("val/AP", "val/AP50", "val/AP75", "val/APM", "val/APL", "val/AR", "train/loss",
                "train/images_per_sec"):
        assert key in metrics["final"]
    assert metrics["final"]["val/num_images"] == 8
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)
    assert {"optimizer_states", "lr_schedulers", "loops", "state_dict"} <= set(ckpt)
    assert "RNGStateCheckpoint" in ckpt["callbacks"]  # the RNG states, restored on resume
    assert not list(root.rglob("*.tmp"))


def test_a_new_run_beside_an_earlier_one_gets_a_fresh_folder_and_says_so(tiny_run) -> None:
    root, result = tiny_run
    earlier = root.parent / "demo"
    assert "INFO dekr.train: run folder: runs/demo-2 (runs/demo holds an earlier run; " \
           "--trainer.default_root_dir runs/demo --ckpt_path last resumes it)" in result.stderr
    assert [p.name for p in earlier.iterdir()] == ["metrics.json"] and \
        (earlier / "metrics.json").read_text() == EARLIER_METRICS  # the earlier run untouched
    assert "default_root_dir: runs/demo-2" in (root / "config.yaml").read_text()  # the saved config names it


def test_the_log_has_a_line_per_validation_and_a_summary_naming_the_files(tiny_run) -> None:
    root, result = tiny_run
    log = result.stderr
    lines = re.findall(r"^INFO dekr\.callbacks\.validation_report: (epoch .*)$", log, flags=re.M)
    validated = [row for row in json.loads((root / "metrics.json").read_text())["history"] if "val/AP" in row]
    assert len(lines) == len(validated) == 2
    for line, row in zip(lines, validated):  # the AP as metrics.json has it (a fraction), then the others
        assert line.startswith(f"epoch {row['epoch']}: val/AP {row['val/AP']:.3f} (best ")
        assert f" AP50 {row['val/AP50']:.3f} " in line and line.endswith(" num_images 8")
    summary = log[log.index("training finished after 2 epoch(s): best val/AP "):].splitlines()
    assert [re.split(r"\s{2,}", line.strip()) for line in summary[1:5]] == [
        ["best checkpoint", "runs/demo-2/checkpoints/best.ckpt"],
        ["last checkpoint", "runs/demo-2/checkpoints/last.ckpt"],
        ["metrics", "runs/demo-2/metrics.json"], ["learning curve", "runs/demo-2/curve.png"]]
    best = next((root / "checkpoints").glob("best-*.ckpt"))
    assert os.path.samefile(root / "checkpoints" / "best.ckpt", best)
    assert (root / "curve.png").read_bytes().startswith(b"\x89PNG")
    assert log.count("training batch: ") == 1  # the batch split, said once


def test_a_new_run_into_a_used_folder_named_on_the_command_line_is_refused(tiny_run, tmp_path: Path,
                                                                            monkeypatch, capsys) -> None:
    root, _ = tiny_run
    before = (root / "metrics.json").read_bytes()
    code, stderr = train_in_process([*TINY_ARGS, "--trainer.default_root_dir", str(root)], tmp_path,
                                    monkeypatch, capsys)
    assert code == 2
    assert f"run folder {root} (--trainer.default_root_dir) holds an earlier run (checkpoints/, " in stderr
    assert "resume it with --ckpt_path last" in stderr and (root / "metrics.json").read_bytes() == before


def test_wandb_offline_run_contains_the_logged_ap(tiny_run) -> None:
    root, result = tiny_run
    runs = list((root / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, "expected one offline W&B run (no API key, no network)"
    rows = history(runs[0])
    aps = [row["val/AP"] for row in rows if "val/AP" in row]
    assert len(aps) == 2  # one per validation epoch
    metrics = json.loads((root / "metrics.json").read_text())
    assert aps[-1] == pytest.approx(metrics["final"]["val/AP"])
    assert any("train/loss" in row for row in rows) and any("lr-Adam/pg1" in row for row in rows)
    assert list((root / "wandb").glob("offline-run-*/files/media/images/val/poses_*.png"))


def test_run_prints_no_library_noise(tiny_run) -> None:
    """The demo's run (offline W&B, pose images of unequal sizes, outside a SLURM job): no library
    message that dekr.library_warnings silences, none of the warnings we caused, and the backbone's
    from-scratch line once, as information (the demo asks for it)."""
    from dekr.library_warnings import LIBRARY_NOISE

    _, result = tiny_run
    for silence in LIBRARY_NOISE:
        assert silence.example[:50] not in result.stderr, silence.library
    for ours in ("The anonymous setting has no effect", "Images sizes do not match", "LeafSpec", "litlogger",
                 "`srun`", "WARNING dekr.preflight: backbone", "starts from scratch"):
        assert ours not in result.stderr, ours
    assert result.stderr.count("INFO dekr.preflight: backbone: hrnet_w18_small from scratch") == 1


def run_layout(root: Path) -> set[str]:
    """The files of a run folder, numbers masked (epochs, AP, W&B run ids), W&B's own files reduced
    to the run file and the logged pose images; less ``config.yaml``, the CLI's resolved config,
    ``.run.lock``, the CLI's run folder lock (dekr.run_lock), and ``git.diff``, there when the
    working tree has uncommitted changes."""
    layout = set()
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or relative in ("config.yaml", ".run.lock", "git.diff"):
            continue
        if relative.startswith("wandb/"):
            if not (relative.endswith(".wandb") or "/media/images/val/poses_" in relative):
                continue
            relative = "wandb/run.wandb" if relative.endswith(".wandb") else "wandb/val_poses.png"
        layout.add(re.sub(r"\d+(\.\d+)?", "N", relative))
    return layout


def test_python_trainer_with_the_library_defaults_writes_the_cli_run_folder(
        tiny_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``lightning.Trainer(**dekr.training.trainer_kwargs(root))`` and ``fit``, without the CLI: the
    CLI run's files (checkpoints, metrics.json, W&B run with pose images), each checkpoint written
    atomically: complete under a temporary name in its folder, then renamed over the target."""
    monkeypatch.setenv("WANDB_MODE", "offline")  # as the CLI run, which has no API key
    renamed: list[tuple[Path, Path]] = []
    replace = os.replace

    def recording_replace(src: str, dst: str) -> None:  # the real rename, recorded
        renamed.append((Path(src), Path(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    root = tmp_path / "run"
    module = DEKRModule(net=DEKRNetConfig(backbone="hrnet_w18_small", heatmap_channels=8,
                                          offset_channels_per_keypoint=4, offset_blocks=1))
    data = DEKRDataModule(dataset="synthetic", input_size=64, batch_size=4, val_batch_size=4, num_workers=0,
                          pin_memory=False, persistent_workers=False,
                          augmentation=AugmentationConfig(flip_prob=0.0),
                          synthetic=SyntheticConfig(num_train=16, num_val=8, image_size=96, max_people=1))
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, log_every_n_steps=1,
                        enable_progress_bar=False, enable_model_summary=False, **trainer_kwargs(root))
    try:
        trainer.fit(module, datamodule=data)
    finally:
        trainer.logger.experiment.finish()
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    last = root / "checkpoints" / "last.ckpt"
    assert [dst for _, dst in renamed if dst == last] == [last, last]  # once per epoch
    for src, dst in renamed:
        if dst.suffix == ".ckpt":
            assert src.parent == dst.parent and src.name.startswith(f".{dst.name}.") and not src.exists()
    cli_root, _ = tiny_run
    layout = run_layout(root)
    assert layout == run_layout(cli_root) and not list(root.rglob("*.tmp"))
    assert {"metrics.json", "provenance.json", "curve.png", "checkpoints/last.ckpt", "checkpoints/best.ckpt",
            "checkpoints/best-epochN-apN.ckpt", "wandb/run.wandb", "wandb/val_poses.png"} == layout
    ours, cli = (json.loads((r / "metrics.json").read_text()) for r in (root, cli_root))
    assert set(ours) == set(cli) and set(ours["final"]) == set(cli["final"])
    assert ours["epochs"] == 2 and len(ours["history"]) == 2
    ours, cli = (json.loads((r / "provenance.json").read_text()) for r in (root, cli_root))
    assert (cli["config_file"], cli["hparams"]) == ("config.yaml", None)  # the CLI's; without it, hparams
    assert ours["config_file"] is None and ours["hparams"]["model"]["net"]["backbone"] == "hrnet_w18_small"


def test_resume_from_last_is_exact(tmp_path: Path) -> None:
    """2 epochs straight vs 1 epoch + resume: bit-equal weights and optimizer state.

    The straight run and the first epoch load their data in the main process (num_workers 0), the
    resumed epoch in 2 worker processes (whose iterator Lightning creates before it restores the
    sampler's epoch: it used to start the resumed epoch with epoch 0's order and augmentations). The
    order and augmentations are functions of (seed, epoch, index), so neither changes a bit.
    (Mid-epoch resume: tests/callbacks/test_preemption.py.)
    """
    args = [*TINY_ARGS, "--pose_images.num_images", "0"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_train([*args, "--data.init_args.num_workers", "0", "--trainer.max_epochs", "2",
               "--trainer.default_root_dir", str(straight)], cwd=tmp_path)
    run_train([*args, "--data.init_args.num_workers", "0", "--trainer.max_epochs", "1",
               "--trainer.default_root_dir", str(resumed)], cwd=tmp_path)
    run_train([*args, "--data.init_args.num_workers", "2", "--trainer.max_epochs", "2",
               "--trainer.default_root_dir", str(resumed), "--ckpt_path", "last"], cwd=tmp_path)
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["epoch"] == b["epoch"] and a["global_step"] == b["global_step"] == 8
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    for i in sa:
        torch.testing.assert_close(sb[i]["exp_avg"], sa[i]["exp_avg"], rtol=0, atol=0)


def test_sync_batchnorm_on_cpu_ddp_fails_clearly(tmp_path: Path) -> None:
    result = run_train([*TINY_ARGS, "--trainer.devices", "2", "--trainer.strategy", "ddp",
                        "--trainer.sync_batchnorm", "true", "--trainer.default_root_dir", str(tmp_path / "r")],
                       cwd=tmp_path, check=False, env=clean_env(WANDB_MODE="disabled"))
    assert result.returncode == 2
    assert "trainer.sync_batchnorm=true needs GPUs" in result.stderr


def test_wandb_disabled_is_respected(tmp_path: Path) -> None:
    root = tmp_path / "run"
    run_train([*TINY_ARGS, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
               "--trainer.default_root_dir", str(root)], cwd=tmp_path, env=clean_env(WANDB_MODE="disabled"))
    assert (root / "checkpoints" / "last.ckpt").is_file()
    assert not list(root.rglob("*.wandb"))


def test_unknown_key_names_key_and_file(tmp_path: Path, monkeypatch, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  net:\n    backbone: hrnet_w18_small\n    bogus_width: 3\n")
    code, stderr = train_in_process(["--config", "demo.yaml", "--config", str(bad)], tmp_path, monkeypatch, capsys)
    assert code == 2
    assert f"{bad}: key 'model.net.bogus_width'" in stderr


def test_wrong_type_names_the_key(tmp_path: Path, monkeypatch, capsys) -> None:
    code, stderr = train_in_process(["--config", "demo", "--model.optim.lr", "fast"], tmp_path, monkeypatch, capsys)
    assert code == 2 and "model.optim" in stderr and "fast" in stderr
    assert "(command line)" in stderr  # not demo.yaml, which sets other model.optim values


def test_unknown_config_name_lists_available(tmp_path: Path, monkeypatch, capsys) -> None:
    code, stderr = train_in_process(["--config", "w99.yaml"], tmp_path, monkeypatch, capsys)
    assert code == 2 and "w99.yaml" in stderr and "demo.yaml" in stderr


def test_missing_dataset_path_is_named(tmp_path: Path) -> None:
    result = run_train(["--config", "demo.yaml", "--data.init_args.dataset", "coco", "--data.init_args.root",
                        str(tmp_path / "no_such_coco"), "--trainer.default_root_dir", str(tmp_path / "r")],
                       cwd=tmp_path, check=False, env=clean_env(WANDB_MODE="disabled"))
    assert result.returncode == 2 and str(tmp_path / "no_such_coco") in result.stderr


def test_resume_from_incompatible_checkpoint_fails_clearly(tiny_run, tmp_path: Path) -> None:
    root, _ = tiny_run
    result = run_train([*TINY_ARGS, "--model.net.heatmap_channels", "16", "--ckpt_path",
                        str(root / "checkpoints" / "last.ckpt"), "--trainer.default_root_dir", str(tmp_path / "r")],
                       cwd=tmp_path, check=False, env=clean_env(WANDB_MODE="disabled"))
    assert result.returncode == 2
    assert "net.heatmap_channels: checkpoint 8 vs config 16" in result.stderr


def test_ema_of_weights_through_the_cli(tmp_path: Path) -> None:
    root = tmp_path / "run"
    run_train([*TINY_ARGS, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(root),
               "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging",
               "--trainer.callbacks.decay", "0.9", "--pose_images.num_images", "0"],
              cwd=tmp_path, env=clean_env(WANDB_MODE="disabled"))
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)
    assert any("EMAWeightAveraging" in key for key in ckpt["callbacks"])


@pytest.mark.slow
def test_compile_option_trains(tmp_path: Path) -> None:
    root = tmp_path / "run"
    # The "eager" backend: TorchDynamo's graph capture of the training and validation passes
    # (validation images of several sizes), without inductor's code generation (minutes on a CPU).
    run_train([*TINY_ARGS, "--model.compile", "true", "--model.compile_options", "{backend: eager}",
               "--trainer.max_epochs", "1", "--trainer.limit_train_batches",
               "2", "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", str(root),
               "--pose_images.num_images", "0"], cwd=tmp_path, env=clean_env(WANDB_MODE="disabled"), timeout=600)
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)
    assert all(k.startswith(("net.", "val_metric.")) for k in ckpt["state_dict"])  # no _orig_mod / compiled copy
    assert "val/AP" in json.loads((root / "metrics.json").read_text())["final"]  # the compiled validation ran
