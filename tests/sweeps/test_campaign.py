"""dekr.sweeps.campaign: frozen points, run folders, the train command of a point."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from dekr.sweeps import Campaign, SweepError
from dekr.sweeps.campaign import slurm_allocation
from tests.scripts.script_runner import clean_env
from tests.sweeps.conftest import write_sweep


def test_the_points_are_frozen_and_read_back_without_the_sweep_file(tmp_path: Path, campaign: Campaign) -> None:
    frozen = json.loads((campaign.folder / "campaign.json").read_text())
    assert len(frozen["points"]) == 4 and yaml.safe_load(frozen["sweep_text"])["name"] == "ablation"
    (tmp_path / "sweep.yaml").unlink()
    loaded = Campaign.load(campaign.folder)
    assert loaded.points == campaign.points and loaded.spec == campaign.spec


def test_an_edited_sweep_file_is_refused_for_a_frozen_campaign(tmp_path: Path, campaign: Campaign) -> None:
    write_sweep(tmp_path, seeds=[0, 1, 2])
    with pytest.raises(SweepError, match="has changed since the campaign") as err:
        Campaign.open(campaign.folder, tmp_path / "sweep.yaml")
    assert str(campaign.folder / "campaign.json") in str(err.value)
    assert len(Campaign.load(campaign.folder).points) == 4  # what queued tasks read is untouched


def test_other_train_arguments_are_refused_and_none_means_the_frozen_ones(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    Campaign.open(tmp_path / "c", sweep, ["--trainer.max_epochs", "2"])
    assert Campaign.open(tmp_path / "c", sweep, []).train_args == ("--trainer.max_epochs", "2")
    with pytest.raises(SweepError, match="frozen with the train.py arguments --trainer.max_epochs 2"):
        Campaign.open(tmp_path / "c", sweep, ["--trainer.max_epochs", "3"])


def test_a_folder_without_campaign_is_named(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="holds no campaign"):
        Campaign.load(tmp_path)


def test_run_folders_are_numbered_and_fresh(campaign: Campaign) -> None:
    point = campaign.points[2]
    assert campaign.current_run(point) is None
    first, second = campaign.new_run(point), campaign.new_run(point)
    assert (first.name, second.name) == ("run-1", "run-2") and campaign.current_run(point) == second
    assert json.loads((campaign.point_folder(point) / "point.json").read_text())["seed"] == point.seed
    with pytest.raises(SweepError, match="out of range"):
        campaign.point(4)


def test_the_train_command_resolves_to_the_point(tmp_path: Path, campaign: Campaign) -> None:
    point = campaign.points[3]  # basic, seed 1
    cmd = campaign.train_command(point, tmp_path / "run")
    assert cmd[cmd.index("--seed_everything") + 1] == "1"
    assert cmd[cmd.index("--ckpt_path") + 1] == "last" and cmd[cmd.index("--resume_if_present") + 1] == "true"
    record = json.loads(cmd[cmd.index("--sweep") + 1])
    assert record["name"] == "ablation" and record["point"] == 3 and record["parameters"] == point.parameters
    out = subprocess.run([*cmd, "--print_config"], capture_output=True, text=True, env=clean_env(), check=True).stdout
    config = yaml.safe_load(out)
    assert config["model"]["net"]["offset_block"] == "basic" and config["seed_everything"] == 1
    assert config["trainer"]["default_root_dir"] == str(tmp_path / "run")


def test_slurm_allocation_sets_nodes_and_devices() -> None:
    assert slurm_allocation({}) == []
    env = {"SLURM_JOB_ID": "7", "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "4(x2)"}
    assert slurm_allocation(env) == ["--trainer.num_nodes", "2", "--trainer.devices", "4"]
    assert slurm_allocation({"SLURM_JOB_ID": "7", "SLURM_NNODES": "2", "SLURM_NTASKS": "8"})[-1] == "4"
