"""Runs that survive: a checkpoint every epoch whatever the validation interval, SIGTERM and Ctrl-C
that save and exit non-zero, and ``--ckpt_path last`` that refuses to start over silently.

The signals are real: sent to a ``scripts/train.py`` subprocess once its first epoch checkpoint exists.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.filesystems import mount_tmpfs, unmount
from tests.scripts.script_runner import REPO
from tests.scripts.train_helpers import TINY_ARGS, clean_env, run_train, train_in_process

pytestmark = pytest.mark.slow

#: Validation every 5th epoch: the epochs before it have no validation.
RARE_VALIDATION = [*TINY_ARGS, "--trainer.check_val_every_n_epoch", "5", "--pose_images.num_images", "0"]
STEPS_PER_EPOCH = 4  # 16 images in batches of 4


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_last_checkpoint_every_epoch_before_the_first_validation(tmp_path: Path) -> None:
    root = tmp_path / "run"
    run_train([*RARE_VALIDATION, "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(root)],
              cwd=tmp_path, env=clean_env(WANDB_MODE="disabled"))
    last = load(root / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 2 * STEPS_PER_EPOCH and last["epoch"] == 1
    assert not list((root / "checkpoints").glob("*.tmp")) and not list((root / "checkpoints").glob(".*"))
    # ... and it resumes: one more epoch from step 8
    run_train([*RARE_VALIDATION, "--trainer.max_epochs", "3", "--trainer.default_root_dir", str(root),
               "--ckpt_path", "last"], cwd=tmp_path, env=clean_env(WANDB_MODE="disabled"))
    assert load(root / "checkpoints" / "last.ckpt")["global_step"] == 3 * STEPS_PER_EPOCH


def test_resume_last_without_a_checkpoint_is_refused_naming_the_folder(tmp_path: Path, monkeypatch,
                                                                        capsys) -> None:
    root = tmp_path / "empty_run"
    code, stderr = train_in_process([*RARE_VALIDATION, "--trainer.default_root_dir", str(root), "--ckpt_path",
                                     "last"], tmp_path, monkeypatch, capsys)
    assert code == 2
    assert f"--ckpt_path last: there is no checkpoint to resume in {root / 'checkpoints'}" in stderr
    assert "--resume_if_present" in stderr and not root.exists()


def test_resume_if_present_starts_a_new_run_then_resumes_it(tmp_path: Path) -> None:
    root = tmp_path / "run"
    args = [*RARE_VALIDATION, "--trainer.default_root_dir", str(root), "--ckpt_path", "last", "--resume_if_present",
            "true"]
    first = run_train([*args, "--trainer.max_epochs", "1"], cwd=tmp_path, env=clean_env(WANDB_MODE="disabled"))
    assert "starting a new run" in first.stderr
    assert load(root / "checkpoints" / "last.ckpt")["global_step"] == STEPS_PER_EPOCH
    second = run_train([*args, "--trainer.max_epochs", "2"], cwd=tmp_path, env=clean_env(WANDB_MODE="disabled"))
    assert "starting a new run" not in second.stderr and "Restoring states from the checkpoint" in second.stderr
    assert load(root / "checkpoints" / "last.ckpt")["global_step"] == 2 * STEPS_PER_EPOCH


def start_long_run(root: Path, cwd: Path) -> subprocess.Popen:
    """A 200-epoch tiny run with validation every 5th epoch, in the background."""
    command = [sys.executable, str(REPO / "scripts" / "train.py"), *RARE_VALIDATION, "--trainer.max_epochs", "200",
               "--trainer.default_root_dir", str(root)]
    return subprocess.Popen(command, cwd=cwd, env=clean_env(WANDB_MODE="disabled"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training ended ({proc.returncode}) before {path} appeared:\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_last_and_exits_non_zero(tmp_path: Path, signum: signal.Signals) -> None:
    root = tmp_path / "run"
    proc = start_long_run(root, tmp_path)
    last = root / "checkpoints" / "last.ckpt"
    wait_for(last, proc)  # the first epoch's checkpoint (no validation has run)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=300)

    assert proc.returncode == 128 + signum, stderr[-3000:]
    line = next(line for line in stderr.splitlines() if line.startswith("error: stopped by"))
    saved = load(last)
    assert line.startswith(f"error: stopped by {signum.name} in epoch ")
    assert f"progress up to global step {saved['global_step']} kept in {last}" in line
    assert STEPS_PER_EPOCH <= saved["global_step"] < 200 * STEPS_PER_EPOCH
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["status"] == "stopped" and metrics["global_step"] >= saved["global_step"]

    resumed = run_train([*RARE_VALIDATION, "--trainer.max_epochs", str(saved["epoch"] + 2),
                         "--trainer.default_root_dir", str(root), "--ckpt_path", "last"],
                        cwd=tmp_path, env=clean_env(WANDB_MODE="disabled"))
    assert "Restoring states from the checkpoint" in resumed.stderr
    assert load(last)["global_step"] == (saved["epoch"] + 2) * STEPS_PER_EPOCH
    assert json.loads((root / "metrics.json").read_text())["status"] == "finished"


def test_second_training_into_a_busy_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    root = tmp_path / "run"
    first = start_long_run(root, tmp_path)
    wait_for(root / "checkpoints" / "last.ckpt", first)
    config_before = (root / "config.yaml").read_bytes()
    second = run_train([*RARE_VALIDATION, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(root),
                        "--seed_everything", "7"], cwd=tmp_path, env=clean_env(WANDB_MODE="disabled"), check=False)
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"error: run folder {root} is in use by another training (pid {first.pid} on " in second.stderr
    assert (root / "config.yaml").read_bytes() == config_before  # the running training's files untouched

    first.kill()  # a SIGKILL: the lock goes with the process, and the next training takes the folder over
    first.wait()
    assert (root / ".run.lock.json").exists()  # left behind by the killed holder
    epochs = load(root / "checkpoints" / "last.ckpt")["epoch"] + 2
    resumed = run_train([*RARE_VALIDATION, "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir",
                         str(root), "--ckpt_path", "last"], cwd=tmp_path, env=clean_env(WANDB_MODE="disabled"))
    assert "Restoring states from the checkpoint" in resumed.stderr
    assert not (root / ".run.lock.json").exists()


class NotWeights:
    """An object a weights-only load refuses (arbitrary classes could run code when unpickled)."""


@pytest.mark.parametrize("content", ["truncated", "foreign pickle"])
def test_unreadable_resume_file_is_refused_before_training(tmp_path: Path, monkeypatch, capsys, content: str) -> None:
    bad = tmp_path / "bad.ckpt"
    if content == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}}, bad)
        bad.write_bytes(bad.read_bytes()[:300])
    else:
        torch.save({"state_dict": {}, "extra": NotWeights()}, bad)
    root = tmp_path / "run"
    code, stderr = train_in_process([*RARE_VALIDATION, "--trainer.default_root_dir", str(root), "--ckpt_path",
                                     str(bad)], tmp_path, monkeypatch, capsys)
    assert code == 2
    assert f"checkpoint to resume from {bad} (--ckpt_path) cannot be read weights-only" in stderr
    assert not root.exists()


def test_no_room_for_a_checkpoint_is_refused_before_training(tmp_path: Path) -> None:
    disk = mount_tmpfs(tmp_path / "small", "size=3m")  # the W18-small run's checkpoint needs about 18 MB
    try:
        root = disk / "run"
        result = run_train([*RARE_VALIDATION, "--trainer.default_root_dir", str(root)], cwd=tmp_path,
                           env=clean_env(WANDB_MODE="disabled"), check=False)
        assert result.returncode == 2, result.stderr[-3000:]
        assert (f"error: the run folder's checkpoint {root / 'checkpoints' / 'last.ckpt'} cannot be written: "
                in result.stderr) and "MiB needed" in result.stderr
        assert not (root / "checkpoints").exists()
    finally:
        unmount(disk)


def test_a_disk_that_fills_during_training_is_one_line(tmp_path: Path) -> None:
    disk = mount_tmpfs(tmp_path / "disk", "size=40m")
    try:
        root = disk / "run"
        proc = start_long_run(root, tmp_path)
        wait_for(root / "checkpoints" / "last.ckpt", proc)
        filler = disk / "filler"  # another job fills the disk: the next checkpoint cannot be written
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"x" * 2**20)
                    f.flush()
            except OSError:
                pass
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 1, stderr[-3000:]
        lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, stderr[-5000:]
        line = lines[0]
        assert line.startswith(f"error: cannot write checkpoint {root / 'checkpoints'}")
        assert "MiB free on its file system without it" in line and "Traceback" not in stderr
        assert not list((root / "checkpoints").glob(".*.tmp"))
        assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] > 0  # intact
    finally:
        unmount(disk)
