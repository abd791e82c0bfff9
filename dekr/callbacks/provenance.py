"""``provenance.json``: where a run came from (command, code, packages, machine, SLURM job) and how each
of its sessions ended, written in the run folder with or without a logger."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from dekr import provenance
from dekr.file_publish import atomic_write_text
from dekr.loggers import WandbLogger

log = logging.getLogger(__name__)

DIFF_FILE = "git.diff"


class Provenance(Callback):
    """Rank 0 writes ``filename`` in the run folder (``trainer.default_root_dir``, atomically) when ``fit``
    starts, and again when it ends, also when it stops on an exception (SIGTERM, Ctrl-C, an error):

    * ``status`` (``running``, ``finished``, ``stopped`` or ``failed``), ``start`` (of the first
      session) and ``end`` (of the last), ``run_dir``;
    * ``command`` (the interpreter and ``sys.argv``, a list), ``command_line`` (one shell string), ``cwd``;
    * ``config_file``: the config LightningCLI saved (``config.yaml``), or ``hparams`` (the module's and
      the datamodule's hyperparameters) for a run without the CLI;
    * ``git`` (of the repository holding ``repo_dir``, default the dekr package's: ``root``, ``commit``,
      ``branch``, ``dirty``, ``untracked`` and ``diff_file``, the uncommitted ``git diff HEAD`` beside
      this file), or ``null`` without git or a repository;
    * ``packages`` (installed distributions, name -> version), ``machine`` (``host``, ``platform``,
      ``python``, ``cpu``, CPU counts), ``devices`` (CUDA devices, torch threads), ``trainer``
      (accelerator, devices, nodes, world size, precision, strategy), ``slurm`` (job, array task,
      nodes, tasks; ``null`` outside SLURM);
    * ``sessions``: one entry per ``fit`` of this run, oldest first, each with its ``command``,
      ``command_line``, ``cwd``, ``start``, ``end``, ``status`` (``killed`` for one that never recorded
      its end), ``error``, ``host``, ``commit``, ``dirty``, ``diff_file``, ``resumed_from`` and
      ``slurm_job_id``. A resumed run (``ckpt_path``) keeps the earlier sessions; a new run in the
      folder replaces them (and their diffs). A session whose diff differs from ``git.diff`` has
      its own ``git.session<N>.diff``.

    The W&B runs of the trainer (:class:`dekr.loggers.WandbLogger`) get the highlights in their
    config: ``provenance.commit``, ``branch``, ``dirty``, ``host``, ``run_dir``.

    Args:
        filename: file name in the run folder.
        command: the command line to record (``sys.argv``: the script first) when the process's own
            was rewritten (``scripts/train.py`` expands ``--config`` names); default ``sys.argv``.
        repo_dir: a folder of the repository whose state to record; default the dekr package's.
    """

    def __init__(self, filename: str = "provenance.json", command: list[str] | None = None,
                 repo_dir: str | os.PathLike | None = None) -> None:
        self.filename = filename
        self.command = command
        self.repo_dir = repo_dir
        self.record: dict[str, Any] | None = None  # what the file holds, once written
        self.written: Path | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        config_file = _saved_config(trainer)  # on every rank: trainer.log_dir is a collective call
        if not trainer.is_global_zero:
            return
        self._begin(trainer, pl_module, config_file)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                git = self.record["git"] or {}
                logger.describe(config={"provenance": {
                    "commit": git.get("commit"), "branch": git.get("branch"), "dirty": git.get("dirty"),
                    "host": self.record["machine"]["host"], "run_dir": self.record["run_dir"]}})

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._end(trainer, pl_module, "finished")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if not trainer.is_global_zero:
            return
        stopped = isinstance(exception, (SystemExit, KeyboardInterrupt))  # SIGTERM, Ctrl-C
        error = type(exception).__name__ + (f": {exception}" if str(exception) else "")
        # a write that fails too (the disk that stopped the run is full) must not hide the run's own error
        try:
            self._end(trainer, pl_module, "stopped" if stopped else "failed", error=error)
        except OSError as err:
            log.warning("could not write %s: %s", self.filename, err)

    def _begin(self, trainer: L.Trainer, pl_module: L.LightningModule, config_file: str | None) -> None:
        run_dir = Path(trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        resumed_from = trainer.ckpt_path
        sessions = _earlier_sessions(run_dir / self.filename) if resumed_from else []
        if not resumed_from:  # a new run in this folder: the earlier run's diffs are not this one's
            for stale in [run_dir / DIFF_FILE, *run_dir.glob("git.session*.diff")]:
                stale.unlink(missing_ok=True)
        git, diff = provenance.git_state(self.repo_dir or provenance.PACKAGE_DIR)
        diff_file = _write_diff(run_dir, diff, len(sessions) + 1) if diff else None
        if git is not None:
            git["diff_file"] = diff_file
        command = provenance.command(self.command)
        machine = provenance.machine()
        slurm = provenance.slurm_job()
        start = provenance.utc_now()
        sessions.append({
            "start": start, "end": None, "status": "running", "error": None,
            "command": command["argv"], "command_line": command["command_line"], "cwd": command["cwd"],
            "host": machine["host"], "commit": git and git["commit"], "dirty": git and git["dirty"],
            "diff_file": diff_file, "resumed_from": resumed_from, "slurm_job_id": slurm and slurm["job_id"],
        })
        self.record = {
            "status": "running", "start": sessions[0]["start"], "end": None,
            "run_dir": str(run_dir.resolve()),
            "command": command["argv"], "command_line": command["command_line"], "cwd": command["cwd"],
            "config_file": config_file,
            "hparams": None if config_file else _hparams(trainer, pl_module),
            "git": git, "packages": provenance.installed_packages(), "machine": machine,
            "devices": provenance.devices(), "trainer": _trainer_setup(trainer), "slurm": slurm,
            "sessions": sessions,
        }
        self._write(run_dir)

    def _end(self, trainer: L.Trainer, pl_module: L.LightningModule, status: str,
             error: str | None = None) -> None:
        if self.record is None:  # stopped before fit started (in setup): record what it was
            self._begin(trainer, pl_module, None)
        session = self.record["sessions"][-1]
        session.update(end=provenance.utc_now(), status=status, error=error)
        self.record.update(status=status, end=session["end"])
        self._write(Path(trainer.default_root_dir))

    def _write(self, run_dir: Path) -> None:
        path = run_dir / self.filename
        atomic_write_text(path, json.dumps(self.record, indent=2, default=str))
        self.written = path


def _saved_config(trainer: L.Trainer) -> str | None:
    """The config file LightningCLI's ``SaveConfigCallback`` wrote for this run (relative to the run
    folder when inside it), or None for a run without the CLI."""
    try:
        from lightning.pytorch.cli import SaveConfigCallback
    except ImportError:  # jsonargparse missing: no CLI
        return None
    saver = next((c for c in trainer.callbacks if isinstance(c, SaveConfigCallback) and c.save_to_log_dir),
                 None)
    log_dir = trainer.log_dir if saver is not None else None
    if log_dir is None:
        return None
    path = Path(log_dir) / saver.config_filename
    try:
        return path.resolve().relative_to(Path(trainer.default_root_dir).resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _earlier_sessions(path: Path) -> list[dict[str, Any]]:
    """The sessions recorded in an earlier ``provenance.json`` (none when missing or unreadable); one
    still ``running`` never recorded its end: it was killed (SIGKILL, out of memory, a lost node)."""
    try:
        sessions = json.loads(path.read_text()).get("sessions") or []
    except (OSError, ValueError, AttributeError) as err:
        if path.exists():
            log.warning("%s unreadable (%s): its earlier sessions are not kept", path, err)
        return []
    for session in sessions:
        if session.get("status") == "running":
            session["status"] = "killed"
    return list(sessions)


def _write_diff(run_dir: Path, diff: str, session: int) -> str:
    """Write ``diff`` as ``git.diff``, or as ``git.session<N>.diff`` when ``git.diff`` holds another
    session's different diff; return the file name."""
    path = run_dir / DIFF_FILE
    try:
        same = path.read_text() == diff
    except OSError:  # none yet
        same = True
    if not same:
        path = run_dir / f"git.session{session}.diff"
    atomic_write_text(path, diff)
    return path.name


def _hparams(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
    """The module's and the datamodule's hyperparameters, as JSON values."""
    found = {"model": dict(pl_module.hparams_initial)}
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and getattr(datamodule, "hparams_initial", None):
        found["data"] = dict(datamodule.hparams_initial)
    return json.loads(json.dumps(found, default=str))


def _trainer_setup(trainer: L.Trainer) -> dict[str, Any]:
    return {"accelerator": type(trainer.accelerator).__name__, "strategy": type(trainer.strategy).__name__,
            "num_devices": trainer.num_devices, "num_nodes": trainer.num_nodes,
            "world_size": trainer.world_size, "precision": str(trainer.precision)}
