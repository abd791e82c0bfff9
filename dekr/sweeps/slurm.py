"""A campaign's points as one SLURM job array (``scripts/slurm/sweep.sbatch``), and the queue's view of it.

Array task ``i`` runs point ``i`` (``sweep.py --out CAMPAIGN --point i``), so a resubmission of some
points is an array of just their indices. Each submission is recorded in the point's run folder
(``submitted.json``: job id, task, log file), which :mod:`dekr.sweeps.status` reads back with
``squeue`` (no accounting database needed: ``sacct`` is often off, and a job that has left the queue
is judged by its run folder).
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from dekr.file_publish import atomic_write_text
from dekr.sweeps.campaign import REPO, Campaign
from dekr.sweeps.spec import Point, SweepError

ARRAY_SCRIPT = REPO / "scripts" / "slurm" / "sweep.sbatch"
SUBMITTED_FILE = "submitted.json"


class SubmissionError(SweepError):
    """sbatch is missing or refused the job; the message carries sbatch's own words."""


def array_ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"`` (sbatch ``--array``)."""
    ranges: list[str] = []
    for index in sorted(set(indices)):
        if ranges and index == int(ranges[-1].split("-")[-1]) + 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{index}"
        else:
            ranges.append(str(index))
    return ",".join(ranges)


def sbatch_command(campaign: Campaign, points: list[Point], sbatch_args: list[str] = ()) -> list[str]:
    """The sbatch command that runs ``points`` as one array: the sweep's resources, then ``sbatch_args``
    (later options win)."""
    logs = campaign.log_folder().resolve()
    return ["sbatch", "--parsable", f"--array={array_ranges([p.index for p in points])}",
            f"--job-name=sweep-{campaign.spec.name}", f"--output={logs}/%A_%a.out",
            *campaign.spec.slurm.sbatch_options(), *sbatch_args, str(ARRAY_SCRIPT), str(campaign.folder.resolve())]


def submit(campaign: Campaign, runs: dict[int, Path], sbatch_args: list[str] = ()) -> str:
    """Submit ``runs`` (point index -> the run folder it is to train in) as one job array; its job id.

    Raises:
        SubmissionError: sbatch is not on the PATH, or refused the job (its message, one line).
    """
    if shutil.which("sbatch") is None:
        raise SubmissionError("sbatch is not on the PATH: --slurm submits from a SLURM login node "
                              "(run the points here with --local instead)")
    points = [campaign.point(i) for i in sorted(runs)]
    campaign.log_folder().mkdir(parents=True, exist_ok=True)
    cmd = sbatch_command(campaign, points, sbatch_args)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        raise SubmissionError(f"sbatch refused the job array: {message} (command: {shlex.join(cmd)})")
    job = result.stdout.strip().split(";")[0]
    for point in points:
        atomic_write_text(runs[point.index] / SUBMITTED_FILE, json.dumps({
            "job": job, "task": point.index, "log": str(campaign.log_folder().resolve() / f"{job}_{point.index}.out"),
            "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2))
    return job


def submission(run_dir: Path) -> dict | None:
    """The run folder's ``submitted.json``, if it was submitted to SLURM."""
    try:
        return json.loads((run_dir / SUBMITTED_FILE).read_text())
    except (OSError, ValueError):
        return None


def queue_states(jobs: set[str]) -> dict[str, str] | None:
    """``{"<job>_<task>": state}`` (``PENDING``, ``RUNNING``, ...) of the array tasks of ``jobs`` still in
    the queue; None when the queue cannot be read (no squeue here)."""
    if not jobs:
        return {}
    if shutil.which("squeue") is None:
        return None
    result = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(sorted(jobs))],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0 and "Invalid job id" not in result.stderr:
        return None
    states = {}
    for line in result.stdout.splitlines():
        if line.strip():
            task, state = line.split()[:2]
            states[task] = state
    return states
