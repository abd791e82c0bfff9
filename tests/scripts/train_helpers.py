"""Running scripts/train.py in a subprocess for the tests."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.scripts.script_runner import REPO, clean_env, run_script

__all__ = ["REPO", "TINY_ARGS", "clean_env", "run_train"]

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
