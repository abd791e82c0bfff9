"""dekr.preflight: device plans against the machine, run folders, file options."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from dekr.data.datamodule import DEKRDataModule
from dekr.preflight import (PreflightError, check_file_option, check_new_run_folder, check_run_folder,
                            earlier_run, plan_devices, run_folder_for)
from dekr.run_lock import hold_run_folder


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


@pytest.fixture
def one_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process alone launches its run (no DDP worker, SLURM task or node variables)."""
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(key, raising=False)


def test_a_new_run_into_a_used_folder_goes_to_the_next_free_one(tmp_path: Path, one_launcher) -> None:
    runs = tmp_path / "runs"
    demo = runs / "demo"
    assert run_folder_for(demo, {}, named=False) == demo  # not there yet
    demo.mkdir(parents=True)
    (demo / ".run.lock").touch()  # the lock file every run leaves: no sign of a run
    assert earlier_run(demo) == [] and run_folder_for(demo, {}, named=False) == demo
    (demo / "checkpoints").mkdir()
    (demo / "metrics.json").write_text("{}")
    (runs / "demo-2").mkdir()
    (runs / "demo-2" / "config.yaml").write_text("")
    assert earlier_run(demo) == ["checkpoints/", "metrics.json"]
    assert run_folder_for(demo, {}, named=False) == runs / "demo-3"
    # resuming (--ckpt_path, --resume_if_present too), or a folder the command line names: as configured
    assert run_folder_for(demo, {"ckpt_path": "last", "resume_if_present": True}, named=False) == demo
    assert run_folder_for(demo, {}, named=True) == demo


def test_a_new_run_into_a_named_used_folder_is_refused_naming_the_way_to_resume(tmp_path: Path,
                                                                                 one_launcher) -> None:
    run = tmp_path / "run"
    assert check_new_run_folder(run, {}) == []
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    assert check_new_run_folder(run, {}) == [
        f"run folder {run} (--trainer.default_root_dir) holds an earlier run (metrics.json): resume it "
        "with --ckpt_path last, or name a new folder (without the option, a new run goes to a fresh numbered "
        "folder beside the configured one)"]
    assert check_new_run_folder(run, {"ckpt_path": "last"}) == []


def test_a_folder_a_training_holds_now_is_left_to_the_run_lock(tmp_path: Path, one_launcher) -> None:
    run = tmp_path / "run"
    with hold_run_folder(run):  # its lock files only, so far
        assert check_new_run_folder(run, {}) == []  # the lock refuses, naming the holder
        assert run_folder_for(run, {}, named=False) == tmp_path / "run-2"


def test_processes_of_one_run_take_the_folder_as_configured(tmp_path: Path, one_launcher,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("")  # what the launching process has begun to write
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP worker Lightning started
    assert run_folder_for(run, {}, named=False) == run and check_new_run_folder(run, {}) == []
    monkeypatch.delenv("LOCAL_RANK")
    assert run_folder_for(run, {"trainer": {"num_nodes": 2}}, named=False) == run  # one node of several
    monkeypatch.setenv("SLURM_NTASKS", "4")  # one of several srun tasks
    assert run_folder_for(run, {}, named=False) == run and check_new_run_folder(run, {}) == []


def test_a_slurm_requeue_checkpoint_is_resumed_in_its_folder(tmp_path: Path, one_launcher,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "hpc_ckpt_1.ckpt").write_bytes(b"")
    assert check_new_run_folder(run, {}) != []  # outside SLURM, Lightning starts anew: a new run
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "dekr")
    assert check_new_run_folder(run, {}) == [] and run_folder_for(run, {}, named=False) == run
