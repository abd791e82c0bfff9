"""Where each point of a campaign stands: done, failed (and why, with its log's tail), running,
pending or never run, read from its latest run folder and, for submitted points, the SLURM queue."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dekr.run_lock import run_folder_holder
from dekr.sweeps.campaign import Campaign
from dekr.sweeps.slurm import queue_states, submission
from dekr.sweeps.spec import Point

DONE, FAILED, RUNNING, PENDING, NEVER_RUN = "done", "failed", "running", "pending", "never run"
STATES = (DONE, FAILED, RUNNING, PENDING, NEVER_RUN)
QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class PointStatus:
    """A point's state, its latest run folder, a reason (failed, pending), the end of its log (failed)
    and the run's ``metrics.json`` as read for the state (None without one)."""

    point: Point
    state: str
    run_dir: Path | None = None
    reason: str = ""
    log_tail: str = ""
    metrics: dict[str, Any] | None = None


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json`` (written by train.py when it ends, however it ends), None without one."""
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None


def metric_values(metrics: dict[str, Any], metric: str) -> list[float]:
    """The metric at every validation of the run, in order."""
    return [row[metric] for row in metrics.get("history", []) if metric in row]


def campaign_status(campaign: Campaign) -> list[PointStatus]:
    """Every point's status (one ``squeue`` call for all submitted points)."""
    runs = {p.index: campaign.current_run(p) for p in campaign.points}
    jobs = {s["job"] for run in runs.values() if run is not None and (s := submission(run))}
    queue = queue_states(jobs)
    return [point_status(campaign, p, runs[p.index], queue) for p in campaign.points]


def point_status(campaign: Campaign, point: Point, run_dir: Path | None,
                 queue: dict[str, str] | None) -> PointStatus:
    if run_dir is None:
        return PointStatus(point, NEVER_RUN)
    metrics = read_metrics(run_dir)
    submitted = submission(run_dir)
    log = Path(submitted["log"]) if submitted else run_dir / "train.log"
    if metrics is not None and metrics.get("status") == "finished":
        if metric_values(metrics, campaign.spec.metric):
            return PointStatus(point, DONE, run_dir, metrics=metrics)
        return PointStatus(point, FAILED, run_dir, f"finished without a {campaign.spec.metric}: no validation ran "
                           "(trainer.check_val_every_n_epoch larger than the epochs?)", _tail(log), metrics=metrics)
    if run_folder_holder(run_dir) is not None:
        return PointStatus(point, RUNNING, run_dir, metrics=metrics)
    if submitted is not None:
        job = f"job {submitted['job']}_{submitted['task']}"
        state = (queue or {}).get(f"{submitted['job']}_{submitted['task']}")
        if queue is None:
            return PointStatus(point, PENDING, run_dir, f"{job} submitted; squeue is not available to say more",
                               metrics=metrics)
        if state in QUEUED:
            return PointStatus(point, PENDING, run_dir, f"{job} {state.lower()}", metrics=metrics)
        if state is not None:
            return PointStatus(point, RUNNING, run_dir, f"{job} {state.lower()}", metrics=metrics)
    if metrics is not None:
        reason = {"stopped": "stopped by a signal (resubmitting resumes it from last.ckpt)",
                  "failed": "the training raised an error"}.get(metrics.get("status"), f"status {metrics.get('status')}")
        return PointStatus(point, FAILED, run_dir, reason, _tail(log), metrics=metrics)
    if log.exists():
        return PointStatus(point, FAILED, run_dir, "exited before training ended", _tail(log), metrics=metrics)
    if submitted is not None:
        return PointStatus(point, FAILED, run_dir, f"job {submitted['job']}_{submitted['task']} left the queue "
                           f"without a log ({log})", metrics=metrics)
    return PointStatus(point, NEVER_RUN, run_dir, metrics=metrics)


def _tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def format_status(statuses: list[PointStatus], with_logs: bool = True) -> str:
    """One line per point, the counts per state, and each failed point's reason and log tail."""
    lines = [f"{s.point.index:4d}  {s.state:<9}  {s.point.label()}" + (f"  ({s.reason})" if s.reason else "")
             for s in statuses]
    counts = {state: sum(s.state == state for s in statuses) for state in STATES}
    lines.append("  ".join(f"{n} {state}" for state, n in counts.items() if n) + f"  (of {len(statuses)} points)")
    if with_logs:
        for s in statuses:
            if s.state == FAILED and s.log_tail:
                lines += [f"--- point {s.point.index} ({s.run_dir}): end of its log ---", s.log_tail]
    return "\n".join(lines)
