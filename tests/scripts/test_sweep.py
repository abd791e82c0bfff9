"""scripts/sweep.py: grid/random expansion, the shipped ablation, local runs, a real SLURM job array."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.scripts.script_runner import REPO, clean_env, run_script
from tests.scripts.train_helpers import TINY_ARGS

import sweep  # noqa: E402


def run_sweep(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True):
    return run_script("sweep.py", args, cwd=cwd, timeout=900, check=check,
                      env=env or clean_env(WANDB_MODE="disabled"))


def test_ablation_grid_has_eight_distinct_points() -> None:
    spec = sweep.load_sweep(sweep.resolve_sweep("adaptive_conv_ablation"))
    points = sweep.expand(spec)
    assert len(points) == 8
    assert len({tuple(sorted(p.items())) for p in points}) == 8
    assert {p["model.net.offset_block"] for p in points} == {"adaptive", "basic"}
    assert {p["model.net.disentangled"] for p in points} == {True, False}


def test_ablation_point_resolves_to_a_valid_train_config(tmp_path: Path) -> None:
    spec = sweep.load_sweep(sweep.resolve_sweep("adaptive_conv_ablation"))
    point = sweep.expand(spec)[7]
    cmd = sweep.point_command(spec, point, tmp_path / "p", []) + ["--print_config"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), check=True).stdout
    config = yaml.safe_load(out)
    net = config["model"]["net"]
    assert (net["offset_block"], net["disentangled"], net["offset_channels_per_keypoint"]) == ("basic", False, 8)
    assert net["backbone"] == "hrnet_w32" and str(config["trainer"]["devices"]) == "1"


def test_random_search_is_seeded_and_in_range(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"method": "random", "num_samples": 20, "seed": 3, "parameters": {
        "model.optim.lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2},
        "model.loss.offset_factor": {"distribution": "uniform", "min": 0.01, "max": 0.1},
        "model.net.offset_blocks": {"distribution": "int_uniform", "min": 1, "max": 3},
        "model.net.offset_block": ["adaptive", "basic"]}}))
    spec = sweep.load_sweep(path)
    a, b = sweep.expand(spec), sweep.expand(spec)
    assert a == b and len(a) == 20
    assert all(1e-4 <= p["model.optim.lr"] <= 1e-2 and p["model.net.offset_blocks"] in (1, 2, 3) for p in a)
    assert len({p["model.net.offset_block"] for p in a}) == 2


@pytest.mark.parametrize("content,message", [
    ({"parameters": {}}, "no parameters"),
    ({"parameters": {"a": {"distribution": "uniform", "min": 0, "max": 1}}}, "need method: random"),
    ({"method": "bayes", "parameters": {"a": [1]}}, "grid or random"),
    ({"parameters": {"a": [1]}, "typo": 1}, "unknown sweep field"),
])
def test_bad_sweep_files(tmp_path: Path, content: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    result = run_sweep([str(path), "--list"], cwd=tmp_path, check=False)
    assert result.returncode == 2 and message in result.stderr and str(path) in result.stderr


def tiny_sweep(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "config": "demo.yaml", "method": "grid",
        "args": [*TINY_ARGS[2:], "--trainer.max_epochs", "1", "--pose_images.num_images", "0"],
        "parameters": {"model.net.offset_block": ["adaptive", "basic"]}}))
    return path


def check_results(out: Path) -> None:
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model.net.offset_block"] for r in rows] == ["adaptive", "basic"]
    assert all(r["status"] == "done" and r["val/AP"] != "" and r["epochs"] == "1" for r in rows)


def test_local_sweep_runs_every_point_and_collects(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_sweep([str(tiny_sweep(tmp_path)), "--local", "--out", str(out)], cwd=tmp_path)
    check_results(out)
    assert "| point | model.net.offset_block |" in result.stdout
    config = (out / "point-001" / "config.yaml").read_text()
    assert "offset_block: basic" in config


@pytest.mark.slow
def test_slurm_job_array_runs_one_task_per_point(slurm_cluster, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "out"
    env = {**clean_env(WANDB_MODE="disabled"), "SLURM_CONF": str(slurm_cluster.conf), "DEKR_REPO_DIR": str(REPO),
           "DEKR_PYTHON": sys.executable}
    result = run_sweep([str(tiny_sweep(tmp_path)), "--slurm", "--out", str(out), "--sbatch-args",
                        "--gpus-per-node=0 --cpus-per-task=1 --mem=3000 --time=20", "--",
                        "--trainer.accelerator", "cpu"], cwd=tmp_path, env=env)
    job = result.stdout.split("submitted job array ")[1].split()[0]
    for task in (0, 1):
        info = slurm_cluster.wait_state(f"{job}_{task}", {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, 400)
        log = (out / f"slurm-{job}_{task}.out").read_text()
        assert info["JobState"] == "COMPLETED", log[-5000:]
        assert f"point {task}" in log
    run_sweep([str(tiny_sweep(tmp_path)), "--collect", "--out", str(out)], cwd=tmp_path, env=env)
    check_results(out)


from tests.scripts.slurm_cluster import slurm_cluster  # noqa: E402,F401  (fixture)
