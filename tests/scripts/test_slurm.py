"""The sbatch template against a real one-node SLURM (slurmctld + slurmd on localhost, 2 CPU tasks):
a DDP training run, and a preemption signal that makes Lightning checkpoint, requeue and resume."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.scripts.slurm_cluster import LocalSlurm, slurm_cluster  # noqa: F401  (fixture)
from tests.scripts.train_helpers import REPO, TINY_ARGS, clean_env
from tests.scripts.wandb_reader import history

pytestmark = pytest.mark.slow

SBATCH = REPO / "scripts" / "slurm" / "train.sbatch"
# The template asks for GPUs and 8 CPUs per task; the local cluster has 2 CPUs and no GPU.
CPU_OPTIONS = ["--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1", "--mem=4000",
               "--time=20"]
STEPS_PER_EPOCH = 2  # 16 synthetic training images / (batch 4 x 2 ranks)


def submit(cluster: LocalSlurm, tmp_path: Path, epochs: int) -> tuple[str, Path, Path]:
    run_dir, log = tmp_path / "run", tmp_path / "slurm.out"
    env = {**clean_env(), "SLURM_CONF": str(cluster.conf), "DEKR_RUN_DIR": str(run_dir), "DEKR_ACCELERATOR": "cpu",
           "DEKR_REPO_DIR": str(REPO), "DEKR_PYTHON": sys.executable}
    job = cluster.sbatch([*CPU_OPTIONS, "--job-name=dekr-test", f"--output={log}", str(SBATCH), *TINY_ARGS,
                          "--trainer.max_epochs", str(epochs)], cwd=tmp_path, env=env)
    return job, run_dir, log


def test_sbatch_template_trains_on_two_tasks(slurm_cluster: LocalSlurm, tmp_path: Path) -> None:  # noqa: F811
    job, run_dir, log = submit(slurm_cluster, tmp_path, epochs=2)
    info = slurm_cluster.wait_state(job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}, 400)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED", text[-5000:]
    assert "1 nodes x 2 tasks" in text
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["global_step"] == 2 * STEPS_PER_EPOCH
    assert metrics["final"]["val/num_images"] == 8
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    (wandb_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    assert sum("val/AP" in row for row in history(wandb_file)) == 2


def test_preemption_signal_checkpoints_requeues_and_resumes(slurm_cluster: LocalSlurm,  # noqa: F811
                                                            tmp_path: Path) -> None:
    epochs = 10
    job, run_dir, log = submit(slurm_cluster, tmp_path, epochs=epochs)
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert time.time() < deadline, log.read_text()[-5000:] if log.exists() else "no output"
        assert slurm_cluster.job_info(job).get("JobState") in ("PENDING", "RUNNING"), log.read_text()[-5000:]
        time.sleep(0.5)
    # What SLURM does --signal=SIGUSR1@90 before the time limit (or a preemption):
    slurm_cluster.run(["scancel", "--signal=USR1", job])
    deadline = time.time() + 120
    while slurm_cluster.job_info(job).get("Restarts", "0") == "0":
        assert time.time() < deadline, f"job was not requeued: {log.read_text()[-5000:]}"
        time.sleep(0.5)
    # A requeued job waits ~2 minutes before it is eligible again; the test does not.
    slurm_cluster.wait_state(job, {"PENDING", "RUNNING"}, 60)
    slurm_cluster.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False)
    info = slurm_cluster.wait_state(job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}, 400)
    text = log.read_text()
    assert info["JobState"] == "COMPLETED", text[-5000:]
    assert info["Restarts"] == "1"
    # Issue 4: checkpoint + requeue at a safe point of the loop (dekr.callbacks.RequeueAtSafePoint), not
    # inside the signal handler, where the saved loop counters could disagree (global_step 21 instead of 20).
    assert "Requeue signal: checkpointing and requeueing at the end of" in text
    assert "Handling auto-requeue signal" in text and "(restart 1)" in text
    hpc = run_dir / "hpc_ckpt_1.ckpt"
    assert f"Restored all states from the checkpoint at {hpc}" in text
    saved = torch.load(hpc, map_location="cpu", weights_only=False)
    assert 0 < saved["global_step"] < epochs * STEPS_PER_EPOCH
    # The training loader's position (rank 0's; every rank is at the same batch of its own shard) is in
    # the checkpoint, and a mid-epoch resume continues the epoch instead of restarting its data.
    (loader,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader["batches"] == saved["global_step"] - loader["epoch"] * STEPS_PER_EPOCH
    assert loader["num_replicas"] == 2 and "dataloader is not resumable" not in text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == epochs and metrics["global_step"] == epochs * STEPS_PER_EPOCH
