"""scripts/train.py: what a run records about itself. Its W&B run's name, group, tags, config and
summary, read from the real offline run file, for a single run (a sweep point's: tests/scripts/test_sweep.py);
``provenance.json`` without W&B, and its sessions after a resume."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from tests.scripts.train_helpers import REPO, TINY_ARGS, clean_env, run_train
from tests.scripts.wandb_reader import history, run_info

TINY = [*TINY_ARGS, "--pose_images.num_images", "0"]


def head_commit() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip("the repository is not a git checkout")
    return done.stdout.strip()


def offline_run(root: Path) -> tuple[dict, list[dict]]:
    [path] = root.glob("wandb/offline-run-*/run-*.wandb")
    return run_info(path), history(path)


@pytest.mark.slow
def test_single_run_is_named_by_config_and_folder_with_whole_config_and_best_ap(tmp_path: Path) -> None:
    root = tmp_path / "runs" / "demo-lr3"
    run_train([*TINY, "--trainer.max_epochs", "2", "--model.optim.lr", "0.003", "--trainer.default_root_dir",
               "runs/demo-lr3"], cwd=tmp_path, env=clean_env(WANDB_MODE="offline"))
    run, rows = offline_run(root)
    assert (run["name"], run["group"], run["tags"]) == ("demo · runs/demo-lr3", "", [])
    config, saved = run["config"], yaml.safe_load((root / "config.yaml").read_text())
    for section in ("model", "data", "seed_everything", "checkpoint", "sweep"):  # the whole config, as saved
        assert config[section] == saved[section], section
    assert config["model"]["optim"]["lr"] == 0.003 and config["trainer"]["max_epochs"] == 2
    assert "net" not in config  # the module's hyperparameters are the config's `model`, not logged twice
    provenance = json.loads((root / "provenance.json").read_text())
    git = provenance["git"]
    assert config["provenance"] == {"commit": head_commit(), "branch": git["branch"], "dirty": git["dirty"],
                                    "host": provenance["machine"]["host"], "run_dir": str(root.resolve())}
    aps = [row["val/AP"] for row in rows if "val/AP" in row]
    assert len(aps) == 2
    assert run["metrics"]["val/AP"] == {"step_metric": "trainer/global_step", "summary": ["max", "last"]}
    assert run["summary"]["val/AP"] == {"max": pytest.approx(max(aps)), "last": pytest.approx(aps[-1])}


@pytest.mark.slow
def test_provenance_without_wandb_keeps_each_session(tmp_path: Path) -> None:
    root = tmp_path / "run"
    args = [*TINY, "--trainer.default_root_dir", str(root)]
    env = clean_env(WANDB_MODE="disabled")
    run_train([*args, "--trainer.max_epochs", "1"], cwd=tmp_path, env=env)
    first = json.loads((root / "provenance.json").read_text())
    run_train([*args, "--trainer.max_epochs", "2", "--ckpt_path", "last"], cwd=tmp_path, env=env)
    record = json.loads((root / "provenance.json").read_text())
    assert not list(root.rglob("*.wandb"))

    commit = head_commit()
    assert record["status"] == "finished" and record["git"]["commit"] == commit
    assert record["git"]["root"] == str(REPO.resolve())
    assert record["packages"]["torch"] == torch.__version__.split("+")[0]  # the distribution's: no build tag
    assert record["devices"]["torch"] == torch.__version__
    assert record["config_file"] == "config.yaml" and record["cwd"] == str(tmp_path)
    assert record["command"][1:4] == [str(REPO / "scripts" / "train.py"), "--config", "demo.yaml"]  # as typed
    assert record["command"][-2:] == ["--ckpt_path", "last"]
    if record["git"]["diff_file"]:  # a working tree with uncommitted changes
        assert record["git"]["dirty"] and (root / record["git"]["diff_file"]).read_text()
    sessions = record["sessions"]
    assert [s["status"] for s in sessions] == ["finished", "finished"]
    assert sessions[0] == first["sessions"][0] and record["start"] == first["start"]
    assert sessions[0]["resumed_from"] is None and sessions[1]["resumed_from"].endswith("last.ckpt")
    assert sessions[0]["end"] <= sessions[1]["start"] and sessions[1]["commit"] == commit
    assert sessions[1]["command"] == record["command"]
