"""dekr.provenance: the git state of real temporary repositories (clean, dirty, untracked, no commit,
not a repository, ignored, no git), the packages, the command, the SLURM job."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch

from dekr import provenance
from tests.helpers.git_repos import committed_repo, git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit of ``code.py`` on branch ``main``."""
    return committed_repo(tmp_path / "repo", {"code.py": "x = 1\n", ".gitignore": "runs/\n"})


def test_clean_repository(repo: Path) -> None:
    (repo / "runs").mkdir()
    (repo / "runs" / "metrics.json").write_text("{}")  # ignored: still clean
    state, diff = provenance.git_state(repo)
    assert state == {"root": str(repo.resolve()), "commit": git(repo, "rev-parse", "HEAD").strip(),
                     "branch": "main", "dirty": False, "untracked": []}
    assert diff == ""


def test_dirty_repository_gives_its_diff_and_untracked_files(repo: Path) -> None:
    (repo / "code.py").write_text("x = 2\n")
    (repo / "new.py").write_text("y = 1\n")
    (repo / "data").mkdir()
    (repo / "data" / "a.txt").write_text("a")
    (repo / "sub").mkdir()
    state, diff = provenance.git_state(repo / "sub")  # any folder of the repository
    assert state["dirty"] and state["root"] == str(repo.resolve())
    assert sorted(state["untracked"]) == ["data/", "new.py"]
    assert "-x = 1\n+x = 2" in diff and diff == git(repo, "diff", "HEAD")
    git(repo, "add", "code.py")  # staged changes are in the diff too
    assert "+x = 2" in provenance.git_state(repo)[1]


def test_untracked_file_alone_makes_it_dirty_without_a_diff(repo: Path) -> None:
    (repo / "notes.txt").write_text("n")
    state, diff = provenance.git_state(repo)
    assert state["dirty"] and state["untracked"] == ["notes.txt"] and diff == ""


def test_detached_head_and_no_commit(repo: Path, tmp_path: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    assert provenance.git_state(repo)[0]["branch"] is None
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    state, diff = provenance.git_state(empty)
    assert state["commit"] is None and diff == ""


def test_no_repository_ignored_folder_or_no_git_is_none(repo: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    assert provenance.git_state(outside) == (None, "")
    (repo / "runs" / "venv").mkdir(parents=True)  # e.g. a virtual environment inside a project
    assert provenance.git_state(repo / "runs" / "venv") == (None, "")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert provenance.git_state(repo) == (None, "")


def test_packages_command_machine_devices() -> None:
    packages = provenance.installed_packages()
    assert packages["torch"] == torch.__version__.split("+")[0]  # the distribution's version has no build tag
    assert list(packages) == sorted(packages, key=str.lower)
    command = provenance.command(["scripts/train.py", "--config", "my config.yaml"],
                                 executable="/usr/bin/python3")
    assert command["argv"] == ["/usr/bin/python3", "scripts/train.py", "--config", "my config.yaml"]
    assert shlex.split(command["command_line"]) == command["argv"]
    assert provenance.machine()["python"].count(".") == 2
    devices = provenance.devices()
    assert devices["torch"] == torch.__version__
    assert devices["cuda_device_count"] == len(devices["cuda_devices"]) == torch.cuda.device_count()


def test_slurm_job_from_the_environment() -> None:
    assert provenance.slurm_job({}) is None
    job = provenance.slurm_job({"SLURM_JOB_ID": "42", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "2",
                                "SLURM_NNODES": "2", "SLURM_NTASKS": "8"})
    assert (job["job_id"], job["array_job_id"], job["array_task_id"], job["nodes"], job["ntasks"]) == \
        ("42", "40", "2", "2", "8")
    assert job["partition"] is None
