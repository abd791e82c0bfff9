"""DDP on CPU (gloo): two processes on one machine, and two "nodes" launched separately on 127.0.0.1.

Both ranks must train on distinct images, and rank 0's OKS-AP must cover every rank's predictions.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts.train_helpers import REPO, TINY_ARGS, clean_env, run_train

pytestmark = pytest.mark.slow

NUM_TRAIN, NUM_VAL = 16, 8


def probe_args(out: Path) -> list[str]:
    return ["--trainer.callbacks+=tests.scripts.ddp_probe.RecordImageIds", "--trainer.callbacks.out_dir", str(out),
            "--trainer.max_epochs", "1", "--pose_images.num_images", "0"]


def check_ranks(out: Path, root: Path, node_ranks: tuple[int, int] = (0, 0)) -> None:
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert (r0["node_rank"], r1["node_rank"]) == node_ranks
    assert r0["backend"] == "gloo"
    # distinct training shards covering the data set
    assert r0["train_ids"] and r1["train_ids"]
    assert not set(r0["train_ids"]) & set(r1["train_ids"])
    assert len(set(r0["train_ids"]) | set(r1["train_ids"])) == NUM_TRAIN
    # each rank decoded half of the validation images; the metric gathered all of them
    assert not set(r0["val_ids"]) & set(r1["val_ids"])
    assert len(r0["val_ids"]) == len(r1["val_ids"]) == NUM_VAL // 2
    assert r0["metrics"]["val/num_images"] == NUM_VAL
    assert r1["metrics"]["val/num_images"] == NUM_VAL  # every rank evaluates the gathered states
    assert r0["metrics"]["val/AP"] == r1["metrics"]["val/AP"]
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["final"]["val/num_images"] == NUM_VAL and (root / "checkpoints" / "last.ckpt").is_file()


def test_two_processes_gloo(tmp_path: Path) -> None:
    root, out = tmp_path / "run", tmp_path / "probe"
    # data.global_batch_size 8 over 2 processes, at most 4 per device (batch_size): 4 images per rank and step
    result = run_train([*TINY_ARGS, *probe_args(out), "--trainer.devices", "2", "--trainer.strategy", "ddp",
                        "--data.init_args.global_batch_size", "8", "--data.init_args.batch_size", "4",
                        "--trainer.default_root_dir", str(root)], cwd=tmp_path)
    check_ranks(out, root)
    for rank in (0, 1):
        sizes = json.loads((out / f"rank{rank}.json").read_text())["train_batch_sizes"]
        assert sizes == [4, 4], sizes  # NUM_TRAIN / 2 ranks = 8 images per rank
    log = result.stdout + result.stderr
    assert "4 images per device (from data.global_batch_size) x 2 device(s) = 8 images per optimizer step" in log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_localhost(tmp_path: Path) -> None:
    root, out = tmp_path / "run", tmp_path / "probe"
    port = _free_port()
    args = [sys.executable, str(REPO / "scripts/train.py"), *TINY_ARGS, *probe_args(out), "--trainer.num_nodes", "2",
            "--trainer.devices", "1", "--trainer.strategy", "ddp", "--trainer.default_root_dir", str(root)]
    procs = []
    for node_rank in (0, 1):
        env = clean_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NODE_RANK=str(node_rank))
        procs.append(subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    try:
        logs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    check_ranks(out, root, node_ranks=(0, 1))
