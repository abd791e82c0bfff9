"""Running scripts/train.py in a subprocess for the tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

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


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "SLURM_", "MASTER_", "NODE_RANK",
                                                                        "LOCAL_RANK", "WORLD_SIZE", "RANK"))}
    env.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NETRC": "/nonexistent"}, **extra)
    return env


def run_train(args: list[str], cwd: Path, timeout: int = 600, check: bool = True,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / "scripts/train.py"), *args], cwd=cwd, env=env or clean_env(),
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"train.py failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result
