"""Provenance: provenance.json and git.diff of a real fit (a small Lightning model) against a temporary
git repository: the first session, a resumed one, a new run in the same folder, a failed one."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from dekr.callbacks import Provenance
from tests.helpers.git_repos import committed_repo, git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return committed_repo(tmp_path / "repo", {"model.py": "width = 32\n"})


class Model(BoringModel):
    def __init__(self, width: int = 32, fail: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()

    def training_step(self, batch, batch_idx):
        if self.hparams.fail:
            raise RuntimeError("boom")
        return super().training_step(batch, batch_idx)


def fit(run: Path, repo: Path, epochs: int, ckpt_path: str | None = None, fail: bool = False) -> dict:
    provenance = Provenance(repo_dir=repo, command=["train.py", "--width", "32"])
    trainer = L.Trainer(default_root_dir=run, max_epochs=epochs, limit_train_batches=2, limit_val_batches=1,
                        callbacks=[provenance], logger=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(Model(fail=fail), ckpt_path=ckpt_path)
    return json.loads((run / "provenance.json").read_text())


def test_sessions_git_state_and_diff(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    run = tmp_path / "run"
    commit = git(repo, "rev-parse", "HEAD").strip()
    (repo / "model.py").write_text("width = 48\n")  # uncommitted
    first = fit(run, repo, epochs=1)
    assert first["status"] == "finished" and first["run_dir"] == str(run.resolve())
    assert first["command"] == [sys.executable, "train.py", "--width", "32"]
    assert first["command_line"].endswith("train.py --width 32") and first["cwd"] == str(Path.cwd())
    assert first["config_file"] is None and first["hparams"]["model"] == {"width": 32, "fail": False}
    assert first["git"]["commit"] == commit and first["git"]["dirty"]
    assert first["git"]["diff_file"] == "git.diff"
    assert "+width = 48" in (run / "git.diff").read_text()
    assert first["packages"]["lightning"] == L.__version__
    assert first["trainer"]["accelerator"] == "CPUAccelerator" and first["slurm"] is None
    [session] = first["sessions"]
    assert session["status"] == "finished" and session["start"] <= session["end"]
    assert session["commit"] == commit
    assert session["resumed_from"] is None and not list(run.glob(".*.tmp"))

    # resumed with another change: the first session and its diff stay, the second has its own
    (repo / "model.py").write_text("width = 64\n")
    second = fit(run, repo, epochs=2, ckpt_path=str(run / "checkpoints" / "epoch=0-step=2.ckpt"))
    assert [s["status"] for s in second["sessions"]] == ["finished", "finished"]
    assert second["sessions"][0] == session and second["start"] == session["start"]
    assert second["sessions"][1]["resumed_from"].endswith("epoch=0-step=2.ckpt")
    assert second["sessions"][1]["diff_file"] == second["git"]["diff_file"] == "git.session2.diff"
    assert "+width = 48" in (run / "git.diff").read_text()
    assert "+width = 64" in (run / "git.session2.diff").read_text()

    # a new run in the folder (no checkpoint given), from a clean tree: one session, no diff left
    git(repo, "checkout", "-q", "model.py")
    third = fit(run, repo, epochs=1)
    assert len(third["sessions"]) == 1
    assert third["git"]["dirty"] is False and third["git"]["diff_file"] is None
    assert not list(run.glob("git*.diff"))


def test_failed_and_killed_sessions(repo: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit(run, repo, epochs=1)
    record = json.loads((run / "provenance.json").read_text())
    record["sessions"][0].update(status="running", end=None)  # as a SIGKILL leaves it
    (run / "provenance.json").write_text(json.dumps(record))
    with pytest.raises(RuntimeError, match="boom"):
        fit(run, repo, epochs=2, ckpt_path=str(run / "checkpoints" / "epoch=0-step=2.ckpt"), fail=True)
    record = json.loads((run / "provenance.json").read_text())
    assert record["status"] == "failed" and record["end"] is not None
    assert [(s["status"], s["error"]) for s in record["sessions"]] == [("killed", None),
                                                                     ("failed", "RuntimeError: boom")]


def test_outside_a_repository_git_is_null(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    record = fit(tmp_path / "run", plain, epochs=1)
    assert record["git"] is None and record["sessions"][0]["commit"] is None
    assert record["status"] == "finished"
