"""scripts/sweep.py end to end: a demo-sized campaign (2 configurations x 2 seeds, one tiny epoch each)
run here and on the real local SLURM cluster, one point failing on purpose and resubmitted."""
from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.scripts.script_runner import REPO, clean_env, run_script
from tests.scripts.train_helpers import TINY_ARGS
from tests.scripts.wandb_reader import run_info


def run_sweep(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True):
    return run_script("sweep.py", args, cwd=cwd, timeout=900, check=check,
                      env=env or clean_env(WANDB_MODE="disabled"))


def tiny_sweep(folder: Path, **fields) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "config": "demo.yaml", "method": "grid", "seeds": [0, 1],
        "args": [*TINY_ARGS[2:], "--trainer.max_epochs", "1", "--pose_images.num_images", "0"],
        "parameters": {"model.net.offset_block": ["adaptive", "basic"]}, **fields}))
    return path


def block_point(out: Path, index: int) -> Path:
    """Make point ``index``'s training fail: a file where its checkpoint folder must go (as a full or
    read-only disk would); removing it lets the point run."""
    blocker = out / f"point-{index:03d}" / "run-1" / "checkpoints"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    return blocker


def results_table(out: Path) -> str:
    return (out / "results.md").read_text()


def check_collected(out: Path) -> None:
    table = results_table(out)
    assert re.search(r"\| adaptive \| 2/2 \| 0\.\d{4} ± 0\.\d{4} \|", table), table
    assert re.search(r"\| basic \| 2/2 \| 0\.\d{4} ± 0\.\d{4} \|", table), table
    for name in ("results.csv", "results.tex", "points.csv", "metric_vs_gflops.png", "learning_curves.png"):
        assert (out / name).stat().st_size > 100, name


def check_wandb_runs(out: Path) -> None:
    """One offline W&B run per run folder, named and tagged by the point, grouped by the sweep, with the
    best and the last val/AP in its summary."""
    for point in range(4):
        for run in sorted((out / f"point-{point:03d}").glob("run-*")):
            [path] = run.glob("wandb/offline-run-*/run-*.wandb")
            info = run_info(path)
            block, seed = ("adaptive", "basic")[point // 2], point % 2
            assert info["name"] == f"offset_block={block} seed={seed}" and info["group"] == "tiny"
            assert info["tags"] == [f"offset_block={block}", f"seed={seed}"]
            assert info["config"]["sweep"]["point"] == point and info["config"]["seed_everything"] == seed
            assert info["config"]["model"]["net"]["offset_block"] == block
            ap = json.loads((run / "metrics.json").read_text())["history"][-1]["val/AP"]
            assert info["summary"]["val/AP"] == {"max": pytest.approx(ap), "last": pytest.approx(ap)}


@pytest.mark.slow
def test_local_campaign_resumes_only_what_failed(tmp_path: Path) -> None:
    sweep, out = tiny_sweep(tmp_path), tmp_path / "out"
    env = clean_env(WANDB_MODE="offline")
    blocker = block_point(out, 3)
    first = run_sweep([str(sweep), "--local", "--out", str(out)], cwd=tmp_path, env=env, check=False)
    assert first.returncode == 1 and "points [3] failed" in first.stderr
    status = run_sweep(["--out", str(out), "--status"], cwd=tmp_path).stdout
    assert "3 done  1 failed  (of 4 points)" in status
    assert "--- point 3" in status and "checkpoints" in status  # the reason, from the end of its log
    assert "| basic | 1/2 |" in results_table(out)  # collected as it stands
    done = {i: (out / f"point-{i:03d}" / "run-1" / "metrics.json").stat().st_mtime_ns for i in range(3)}

    blocker.unlink()
    second = run_sweep([str(sweep), "--local", "--out", str(out)], cwd=tmp_path, env=env)
    assert "point 3 (offset_block=basic seed=1)" in second.stdout
    assert not re.search(r"\] point [012] ", second.stdout)
    assert {i: (out / f"point-{i:03d}" / "run-1" / "metrics.json").stat().st_mtime_ns for i in range(3)} == done
    check_collected(out)
    assert "nothing to run: 4 done" in run_sweep([str(sweep), "--local", "--out", str(out)], cwd=tmp_path).stdout

    refused = run_sweep([str(sweep), "--local", "--out", str(out), "--points", "0"], cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "point 0 is done" in refused.stderr and "--force" in refused.stderr
    run_sweep([str(sweep), "--local", "--out", str(out), "--points", "0", "--force"], cwd=tmp_path, env=env)
    runs = sorted(p.name for p in (out / "point-000").iterdir() if p.is_dir())
    assert runs == ["run-1", "run-2"]
    assert "last.ckpt" in {p.name for p in (out / "point-000" / "run-2" / "checkpoints").iterdir()}
    assert not list(out.rglob("*-v1.ckpt"))
    assert json.loads((out / "point-000" / "run-2" / "metrics.json").read_text())["status"] == "finished"
    check_wandb_runs(out)
    provenance = json.loads((out / "point-003" / "run-1" / "provenance.json").read_text())
    assert provenance["status"] == "finished" and provenance["command"][-2] == "--sweep"

    sweep.write_text(sweep.read_text().replace("seeds:\n- 0\n- 1", "seeds:\n- 0\n- 1\n- 2"))
    edited = run_sweep([str(sweep), "--status", "--out", str(out)], cwd=tmp_path, check=False)
    assert edited.returncode == 2 and "has changed since the campaign" in edited.stderr


def wait_for_campaign(out: Path, env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = run_sweep(["--out", str(out), "--status"], cwd=cwd, env=env).stdout
        summary = status.splitlines()[len(list(out.glob("point-*")))] if status else ""
        if " pending" not in summary and " running" not in summary and "never run" not in summary:
            return status
        time.sleep(3)
    raise TimeoutError(f"campaign {out} still busy after {timeout} s:\n{status}")


@pytest.mark.slow
def test_slurm_campaign_submits_resubmits_and_collects(slurm_cluster, tmp_path: Path) -> None:  # noqa: F811
    env = {**clean_env(WANDB_MODE="disabled"), "SLURM_CONF": str(slurm_cluster.conf), "DEKR_REPO_DIR": str(REPO),
           "DEKR_PYTHON": sys.executable}
    sweep = tiny_sweep(tmp_path, slurm={"gpus_per_node": 0, "cpus_per_task": 1, "mem": "3000", "time": "20"})
    out = tmp_path / "out"
    submit = [str(sweep), "--slurm", "--out", str(out), "--", "--trainer.accelerator", "cpu"]

    refused = run_sweep([*submit[:4], "--sbatch-args", "--partition nope", *submit[4:]], cwd=tmp_path, env=env,
                        check=False)
    assert refused.returncode == 2 and "sbatch refused the job array: sbatch: error:" in refused.stderr
    assert "partition" in refused.stderr.lower() and len(refused.stderr.strip().splitlines()) == 1
    assert not list(out.glob("point-*/run-*"))  # nothing left behind by the refused submission

    blocker = block_point(out, 1)
    first = run_sweep(submit, cwd=tmp_path, env=env)
    job = first.stdout.split("submitted job array ")[1].split(":")[0]
    assert "points 0, 1, 2, 3" in first.stdout
    status = wait_for_campaign(out, env, tmp_path)
    assert "3 done  1 failed  (of 4 points)" in status and "--- point 1" in status, status
    assert (out / "logs" / f"{job}_1.out").exists()
    assert "nothing to run" in run_sweep(submit, cwd=tmp_path, env=env).stdout  # missing: none

    blocker.unlink()
    again = run_sweep([*submit[:4], "--resubmit", "failed"], cwd=tmp_path, env=env)  # the frozen train args
    assert "points 1\n" in again.stdout
    status = wait_for_campaign(out, env, tmp_path)
    assert "4 done  (of 4 points)" in status, status
    log = (out / "logs" / f"{again.stdout.split('submitted job array ')[1].split(':')[0]}_1.out").read_text()
    assert "point 1 (offset_block=adaptive seed=1)" in log
    run_sweep(["--out", str(out), "--collect"], cwd=tmp_path, env=env)
    check_collected(out)


@pytest.mark.slow
def test_slurm_point_trains_on_every_task_of_its_allocation(slurm_cluster, tmp_path: Path) -> None:  # noqa: F811
    """A point of two processes (``tasks_per_node: 2``): one DDP training over both tasks of its job."""
    env = {**clean_env(WANDB_MODE="disabled"), "SLURM_CONF": str(slurm_cluster.conf), "DEKR_REPO_DIR": str(REPO),
           "DEKR_PYTHON": sys.executable}
    sweep = tiny_sweep(tmp_path, seeds=[0], parameters={"model.net.offset_block": ["deformable"]},
                       slurm={"gpus_per_node": 0, "tasks_per_node": 2, "cpus_per_task": 1, "mem": "6000", "time": "20"})
    out = tmp_path / "out"
    submitted = run_sweep([str(sweep), "--slurm", "--out", str(out), "--", "--trainer.accelerator", "cpu"],
                          cwd=tmp_path, env=env)
    status = wait_for_campaign(out, env, tmp_path)
    job = submitted.stdout.split("submitted job array ")[1].split(":")[0]
    assert "1 done  (of 1 points)" in status, status + (out / "logs" / f"{job}_0.out").read_text()[-3000:]
    provenance = json.loads((out / "point-000" / "run-1" / "provenance.json").read_text())
    assert provenance["trainer"]["world_size"] == 2 and provenance["trainer"]["num_devices"] == 2
    assert provenance["trainer"]["strategy"] == "DDPStrategy"
    assert provenance["slurm"]["ntasks"] in ("2", 2)
    assert json.loads((out / "point-000" / "run-1" / "metrics.json").read_text())["status"] == "finished"


def test_a_task_runs_its_frozen_point_after_the_sweep_file_is_edited(tmp_path: Path) -> None:
    """What an array task does (``--point``), with ``--print_config`` as the frozen train.py argument: the
    point resolves from campaign.json, not from the sweep file edited while it was queued."""
    sweep, out = tiny_sweep(tmp_path), tmp_path / "out"
    run_sweep([str(sweep), "--slurm", "--dry-run", "--out", str(out)], cwd=tmp_path)  # freezes nothing
    from dekr.sweeps import Campaign
    Campaign.open(out, sweep, ["--print_config"])  # what the first --slurm does
    sweep.write_text(sweep.read_text().replace("- basic", "- deformable"))
    task = run_sweep(["--out", str(out), "--point", "3"], cwd=tmp_path)
    assert "has changed since the campaign" in task.stderr and "running the frozen point" in task.stderr
    announced, printed = task.stdout.split("\n", 1)  # sweep.py's line, then train.py's resolved config
    assert announced.startswith("[sweep tiny] point 3 (offset_block=basic seed=1)")
    config = yaml.safe_load(printed)
    assert config["model"]["net"]["offset_block"] == "basic" and config["seed_everything"] == 1
    assert config["sweep"]["point"] == 3


def test_missing_sbatch_is_one_line(tmp_path: Path) -> None:
    env = clean_env(WANDB_MODE="disabled", PATH=str(Path(sys.executable).parent))
    assert shutil.which("sbatch", path=env["PATH"]) is None
    result = run_sweep([str(tiny_sweep(tmp_path)), "--slurm", "--out", str(tmp_path / "out")], cwd=tmp_path, env=env,
                       check=False)
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: sbatch is not on the PATH: --slurm submits from a SLURM login node (run the points here with --local "
        "instead)")


def test_list_and_dry_run_freeze_nothing(tmp_path: Path) -> None:
    sweep, out = tiny_sweep(tmp_path), tmp_path / "out"
    listed = run_sweep([str(sweep), "--list", "--out", str(out)], cwd=tmp_path).stdout
    assert listed.splitlines()[3].split() == ["3", "offset_block=basic", "seed=1"]
    dry = run_sweep([str(sweep), "--slurm", "--dry-run", "--out", str(out)], cwd=tmp_path).stdout
    assert "--array=0-3" in dry and "scripts/slurm/sweep.sbatch" in dry and not out.exists()


from tests.scripts.slurm_cluster import slurm_cluster  # noqa: F401  (fixture)
