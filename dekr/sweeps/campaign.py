"""A campaign: the sweep's points frozen in their folder, each point's run folders and its train command.

The campaign folder (``--out``, default ``runs/sweeps/<name>``)::

    campaign.json         the frozen points, the sweep file's text and digest, the train.py arguments
    point-003/
      point.json          the point (configuration, seed, parameters)
      run-1/              a training run of the point: train.py's run folder (checkpoints/, config.yaml,
                          metrics.json, provenance.json, wandb/) and train.log (local runs) or
                          submitted.json (SLURM: job id and log file)
      run-2/              a forced rerun (``--force``): a fresh folder, the first one kept
    logs/<job>_<task>.out SLURM task logs

The points are frozen when a campaign first runs or is submitted: array tasks read
``campaign.json``, never the sweep file, so editing the sweep file while tasks are queued changes
nothing they run; commands given an edited sweep file for an existing campaign are refused.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dekr.file_publish import atomic_write_text
from dekr.sweeps.spec import Point, SweepError, SweepSpec, cli_value, file_digest, load_sweep

REPO = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO / "scripts" / "train.py"
CAMPAIGN_FILE = "campaign.json"


@dataclass(frozen=True)
class Campaign:
    """The frozen points of a sweep in ``folder``.

    Args:
        folder: the campaign folder.
        spec: the sweep as frozen.
        points: its points (``spec.points()`` when frozen).
        sweep_file: where the sweep file was when the campaign was frozen.
        sweep_digest: its SHA-256 then.
        train_args: train.py arguments given after ``--`` when frozen, for every point.
    """

    folder: Path
    spec: SweepSpec
    points: list[Point]
    sweep_file: Path
    sweep_digest: str
    train_args: tuple[str, ...] = ()

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Campaign:
        """The campaign frozen in ``folder``; :class:`SweepError` when there is none."""
        folder = Path(folder)
        path = folder / CAMPAIGN_FILE
        try:
            frozen = json.loads(path.read_text())
        except FileNotFoundError:
            raise SweepError(f"{folder} holds no campaign ({CAMPAIGN_FILE} is missing): give the sweep file "
                             "to start one, or the --out of an existing campaign") from None
        except ValueError as err:
            raise SweepError(f"{path}: unreadable ({err})") from None
        sweep_file = Path(frozen["sweep_file"])
        spec = load_sweep(sweep_file, text=frozen["sweep_text"])
        points = [Point(**p) for p in frozen["points"]]
        return cls(folder, spec, points, sweep_file, frozen["sweep_digest"], tuple(frozen.get("train_args", ())))

    @classmethod
    def open(cls, folder: str | os.PathLike, sweep_file: Path | None,
             train_args: list[str] | None = None) -> Campaign:
        """The campaign in ``folder``, frozen from ``sweep_file`` now if there is none yet.

        An existing campaign must match: a sweep file whose content changed since, or other
        ``train_args``, is refused (:class:`SweepError`); ``train_args`` left empty means the frozen ones.
        """
        folder = Path(folder)
        if (folder / CAMPAIGN_FILE).exists():
            campaign = cls.load(folder)
            if sweep_file is not None:
                campaign.check_sweep_file(sweep_file)
            if train_args and tuple(train_args) != campaign.train_args:
                raise SweepError(f"the campaign in {folder} was frozen with the train.py arguments "
                                 f"{shlex.join(campaign.train_args) or '(none)'}, not {shlex.join(train_args)}; "
                                 "leave them out to use the frozen ones, or start a campaign in another --out")
            return campaign
        if sweep_file is None:
            return cls.load(folder)  # the error for a folder without a campaign
        return cls.freeze(folder, sweep_file, train_args or [])

    @classmethod
    def freeze(cls, folder: Path, sweep_file: Path, train_args: list[str]) -> Campaign:
        text = sweep_file.read_text()
        spec = load_sweep(sweep_file, text=text)
        campaign = cls(folder, spec, spec.points(), sweep_file.resolve(), file_digest(sweep_file), tuple(train_args))
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / CAMPAIGN_FILE, json.dumps({
            "name": spec.name, "sweep_file": str(campaign.sweep_file), "sweep_digest": campaign.sweep_digest,
            "sweep_text": text, "frozen_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "train_args": list(train_args),
            "points": [p.as_dict() for p in campaign.points]}, indent=2))
        return campaign

    def check_sweep_file(self, sweep_file: Path) -> None:
        """Refuse a sweep file that is not the one this campaign was frozen from (content, not path)."""
        if file_digest(sweep_file) != self.sweep_digest:
            raise SweepError(
                f"{sweep_file} has changed since the campaign in {self.folder} was frozen from it "
                f"({self.folder / CAMPAIGN_FILE} keeps the frozen text and points, which queued tasks run); "
                "to run the edited sweep start another campaign (another --out), or restore the file")

    def point(self, index: int) -> Point:
        if not 0 <= index < len(self.points):
            raise SweepError(f"point {index} out of range: the campaign in {self.folder} has {len(self.points)} points")
        return self.points[index]

    def point_folder(self, point: Point) -> Path:
        return self.folder / f"point-{point.index:03d}"

    def runs(self, point: Point) -> list[Path]:
        """The point's run folders, oldest first."""
        folder = self.point_folder(point)
        runs = [p for p in folder.glob("run-*") if p.is_dir() and p.name[4:].isdigit()] if folder.is_dir() else []
        return sorted(runs, key=lambda p: int(p.name[4:]))

    def current_run(self, point: Point) -> Path | None:
        """The point's latest run folder (the one its status and results come from), None if never run."""
        runs = self.runs(point)
        return runs[-1] if runs else None

    def new_run(self, point: Point) -> Path:
        """A fresh run folder for the point (``run-<n+1>``), its ``point.json`` written."""
        runs = self.runs(point)
        run = self.point_folder(point) / f"run-{int(runs[-1].name[4:]) + 1 if runs else 1}"
        run.mkdir(parents=True)
        atomic_write_text(self.point_folder(point) / "point.json", json.dumps(point.as_dict(), indent=2))
        return run

    def log_folder(self) -> Path:
        return self.folder / "logs"

    def sweep_record(self, point: Point) -> dict[str, Any]:
        """What train.py's ``--sweep`` gets: the run's place in the campaign (W&B name, group, tags)."""
        return {"name": self.spec.name, "point": point.index, "configuration": point.configuration,
                "seed": point.seed, "parameters": point.parameters, "campaign": str(self.folder.resolve())}

    def train_command(self, point: Point, run_dir: Path, allocation: list[str] = ()) -> list[str]:
        """The train.py command of ``point`` in ``run_dir``: the base config, the sweep's ``args``, the
        point's values and seed, the frozen ``train_args``, then ``allocation`` (SLURM's nodes and devices).
        It resumes the run folder's ``last.ckpt`` when there is one (a failed or requeued point goes on)."""
        cmd = [sys.executable, str(TRAIN_SCRIPT)]
        if self.spec.config:
            cmd += ["--config", str(self.spec.config)]
        cmd += list(self.spec.args)
        for key, value in point.parameters.items():
            cmd += [f"--{key}", cli_value(value)]
        if point.seed is not None:
            cmd += ["--seed_everything", str(point.seed)]
        cmd += [*self.train_args, *allocation, "--trainer.default_root_dir", str(run_dir),
                "--ckpt_path", "last", "--resume_if_present", "true",
                "--sweep", json.dumps(self.sweep_record(point))]
        return cmd


def slurm_allocation(env: dict[str, str]) -> list[str]:
    """``--trainer.num_nodes`` and ``--trainer.devices`` from a SLURM task's environment ([] outside SLURM)."""
    if "SLURM_JOB_ID" not in env or "SLURM_NNODES" not in env:
        return []
    nodes = int(env["SLURM_NNODES"])
    per_node = env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
    tasks = int(per_node) if per_node.isdigit() else int(env.get("SLURM_NTASKS", nodes)) // nodes
    return ["--trainer.num_nodes", str(nodes), "--trainer.devices", str(tasks)]


def train_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def run_here(campaign: Campaign, point: Point, run_dir: Path) -> int:
    """Train ``point`` in ``run_dir`` in a child process, its output shown and appended to ``run_dir/train.log``;
    the exit status."""
    cmd = campaign.train_command(point, run_dir)
    print(f"[sweep {campaign.spec.name}] point {point.index} ({point.label()}) in {run_dir}", flush=True)
    with open(run_dir / "train.log", "a") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        # unbuffered: the training's lines reach the console and the log as they are printed, not at exit
        process = subprocess.Popen(cmd, env={**train_env(), "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert process.stdout is not None
        try:
            for line in process.stdout:
                sys.stdout.write(line)
                log.write(line)
        except KeyboardInterrupt:  # Ctrl-C reached the training too: let it save last.ckpt and exit
            process.wait()
            raise
        return process.wait()


def exec_point(campaign: Campaign, point: Point, run_dir: Path) -> None:
    """Replace this process by the point's training (a SLURM array task: SLURM's signals then reach
    train.py directly, for the checkpoint-and-requeue)."""
    cmd = campaign.train_command(point, run_dir, slurm_allocation(dict(os.environ)))
    print(f"[sweep {campaign.spec.name}] point {point.index} ({point.label()}): {shlex.join(cmd[1:])}", flush=True)
    os.execve(cmd[0], cmd, train_env())
