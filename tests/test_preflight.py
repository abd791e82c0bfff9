"""dekr.preflight: device plans against the machine, run folders, file options."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from dekr.data.datamodule import DEKRDataModule
from dekr.preflight import PreflightError, check_file_option, check_run_folder, plan_devices


@pytest.mark.parametrize("accelerator, devices, gpus, expected", [
    ("auto", "auto", 0, 1), ("auto", "auto", 4, 4), ("auto", 2, 4, 2), ("gpu", [0, 2], 4, 2),
    ("auto", "0,1,2", 4, 3), ("cpu", 3, 0, 3), ("cpu", "auto", 8, 1), ("auto", -1, 8, 8), ("cuda", 1, 1, 1),
])
def test_device_plan_counts_what_lightning_would_start(accelerator, devices, gpus, expected):
    plan = plan_devices(accelerator, devices, num_nodes=2, gpus=gpus)
    assert plan.problems == [] and plan.devices == expected and plan.world_size == 2 * expected


def test_auto_accelerator_without_gpu_refuses_several_cpu_processes():
    plan = plan_devices("auto", 8, gpus=0)
    assert len(plan.problems) == 1
    assert "trainer.devices=8" in plan.problems[0] and "would start 8 CPU processes" in plan.problems[0]
    assert "--trainer.devices auto" in plan.problems[0] and "--trainer.accelerator cpu" in plan.problems[0]


def test_more_gpus_than_present_and_gpu_without_gpu_are_problems():
    assert "asks for 8 GPUs but this machine has 2" in plan_devices("auto", 8, gpus=2).problems[0]
    assert "no GPU is visible" in plan_devices("gpu", 1, gpus=0).problems[0]
    assert "not a count" in plan_devices("auto", "many", gpus=0).problems[0]


def test_run_folder_checks_create_nothing(tmp_path: Path):
    target = tmp_path / "runs" / "w48"
    assert check_run_folder(target) == [] and not (tmp_path / "runs").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "exists and is not a folder" in check_run_folder(blocker)[0]
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "is not writable" in check_run_folder(locked / "run")[0]


def test_file_option_names_the_option(tmp_path: Path):
    assert check_file_option(None, "--model.init_from", "checkpoint") == []
    problem = check_file_option(str(tmp_path / "x.ckpt"), "--model.init_from", "fine-tuning checkpoint")
    assert problem == [f"fine-tuning checkpoint {tmp_path / 'x.ckpt'} (--model.init_from) does not exist"]


def test_datamodule_missing_files_reads_nothing_and_names_the_option(tmp_path: Path, fixtures_dir: Path):
    missing = DEKRDataModule(dataset="coco", root=str(tmp_path / "coco"))
    problems = missing.missing_files()
    assert len(problems) == 1 and "--data.init_args.root" in problems[0] and "does not exist" in problems[0]
    assert "annotations/person_keypoints_train2017.json" in problems[0]
    empty = DEKRDataModule(dataset="crowdpose", root=str(tmp_path))
    problems = empty.missing_files()
    assert any("json/crowdpose_trainval.json" in p and "train_split.annotations" in p for p in problems)
    assert any(str(tmp_path / "images") in p and "image folder" in p for p in problems)
    minicoco = DEKRDataModule(dataset="coco", root=str(fixtures_dir / "coco_minicoco"))
    assert minicoco.missing_files() == []
    assert DEKRDataModule(dataset="synthetic").missing_files() == []


def test_preflight_error_lists_every_problem():
    err = PreflightError(["a is missing", "b is missing"])
    assert "2 problem(s)" in str(err) and "  - a is missing\n  - b is missing" in str(err)
