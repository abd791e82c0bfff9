"""Running scripts/train.py for the tests: in a subprocess, or its ``main`` in this process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Imported at collection, not first inside a test: on import Lightning gives its logger a handler on
# the sys.stderr of that moment unless the root logger has one; inside a test that is the test's
# captured stream, closed after it, and every later test's Lightning log line would fail to print.
import lightning.pytorch  # noqa: F401
import pytest

from tests.scripts.script_runner import LEAKING_PREFIXES, REPO, clean_env, run_script

__all__ = ["REPO", "TINY_ARGS", "clean_env", "run_train", "train_in_process"]

# A tiny, fast variant of configs/demo.yaml (seconds per epoch on one CPU core).
TINY_ARGS = [
    "--config", "demo.yaml",
    "--model.net.heatmap_channels", "8", "--model.net.offset_channels_per_keypoint", "4",
    "--data.init_args.input_size", "64", "--data.init_args.batch_size", "4", "--data.init_args.val_batch_size", "4",
    "--data.init_args.synthetic.num_train", "16", "--data.init_args.synthetic.num_val", "8",
    "--data.init_args.synthetic.image_size", "96",
    "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1",
    "--trainer.enable_progress_bar", "false",
]


def run_train(args: list[str], cwd: Path, timeout: int = 600, check: bool = True,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_script("train.py", args, cwd=cwd, timeout=timeout, check=check, env=env)


def train_in_process(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``scripts/train.py``'s ``main(args)`` in this process, from ``cwd``, without the launcher / W&B
    variables: (exit code, stderr). For runs that stop before training (bad configs, preflight
    errors), where a subprocess would spend most of its time importing torch and Lightning. Rank-
    and network-dependent cases stay in subprocesses (both are read when those libraries load)."""
    import train  # (lightning is imported at this module's import: see the note at its import)

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    for key in [k for k in os.environ if k.startswith(LEAKING_PREFIXES)]:
        monkeypatch.delenv(key)
    capsys.readouterr()
    code = train.main(args)
    return code, capsys.readouterr().err
