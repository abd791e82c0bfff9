"""Where a run came from: the command, the code (git commit, branch, uncommitted diff), the installed
packages, the machine and the SLURM job. Plain functions that never fail the run: what cannot be
found (no ``git``, not a repository, no GPU, no SLURM) is ``None``.

:class:`dekr.callbacks.Provenance` writes them to ``provenance.json`` in the run folder.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import logging
import os
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The folder of the dekr package: its repository is the code a run ran.
PACKAGE_DIR = Path(__file__).resolve().parent

# SLURM's description of a job (``sbatch`` / ``srun`` environment) -> our key.
SLURM_VARIABLES = {
    "job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID",
    "job_name": "SLURM_JOB_NAME", "partition": "SLURM_JOB_PARTITION", "nodelist": "SLURM_JOB_NODELIST",
    "nodes": "SLURM_JOB_NUM_NODES", "ntasks": "SLURM_NTASKS", "restart_count": "SLURM_RESTART_COUNT",
}


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the second (``2025-01-31T12:00:00+00:00``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def command(argv: Sequence[str] | None = None, executable: str | None = None) -> dict[str, Any]:
    """The command that started this process: ``argv`` (the interpreter, then ``sys.argv``) and
    ``command_line``, the same as one shell string; and ``cwd``, where it ran."""
    args = [executable or sys.executable, *(sys.argv if argv is None else argv)]
    return {"argv": args, "command_line": shlex.join(args), "cwd": os.getcwd()}


def _git(repo_dir: Path, *args: str) -> str | None:
    """``git -C repo_dir ARGS``'s stdout, or None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True, timeout=60,
                              check=False, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    except (OSError, subprocess.SubprocessError) as err:  # no git, a hung file system
        log.debug("git %s: %s", " ".join(args), err)
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(repo_dir: str | os.PathLike = PACKAGE_DIR) -> tuple[dict[str, Any] | None, str]:
    """The git state of the repository that holds ``repo_dir`` (default: the dekr package's) and its
    uncommitted diff.

    Returns ``(state, diff)``: ``state`` is ``None`` when ``git`` is missing, ``repo_dir`` is in no
    repository or is ignored by the one around it (a virtual environment inside a project), else
    ``root``, ``commit`` (None before the first commit), ``branch`` (None when detached), ``dirty``
    (changed, staged or untracked files) and ``untracked`` (the paths of untracked files, a folder
    as one ``name/``; ignored ones left out); ``diff``
    is ``git diff HEAD`` (staged and unstaged changes of tracked files, ``""`` when clean).
    """
    repo_dir = Path(repo_dir)
    root = _git(repo_dir, "rev-parse", "--show-toplevel")
    if root is None or _git(repo_dir, "check-ignore", "-q", ".") is not None:  # exit 0: ignored
        return None, ""
    commit = _git(repo_dir, "rev-parse", "--verify", "-q", "HEAD")
    branch = _git(repo_dir, "symbolic-ref", "-q", "--short", "HEAD")
    # porcelain: paths relative to the root, an untracked folder as one entry ("?? data/")
    status = (_git(repo_dir, "status", "--porcelain", "-z") or "").split("\0")
    untracked = [entry[3:] for entry in status if entry.startswith("?? ")]
    diff = (_git(repo_dir, "diff", "HEAD") or "") if commit else ""
    state = {"root": root.strip(), "commit": commit.strip() if commit else None,
             "branch": branch.strip() if branch else None, "dirty": any(status),
             "untracked": untracked}
    return state, diff


def installed_packages() -> dict[str, str]:
    """Every installed distribution's version, by name (sorted, case-insensitively)."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name not in found:  # the first on sys.path is the one imported
            found[name] = dist.version
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine() -> dict[str, Any]:
    """The host, OS, Python and CPU: ``host``, ``platform``, ``python``, ``python_implementation``,
    ``cpu``, ``cpu_count`` (logical CPUs) and ``usable_cpus`` (this process's affinity)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        usable = os.cpu_count()
    return {"host": socket.gethostname(), "platform": platform.platform(),
            "python": platform.python_version(), "python_implementation": platform.python_implementation(),
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "usable_cpus": usable}


def devices() -> dict[str, Any]:
    """What torch sees: ``torch`` (its version with the build, ``2.6.0+cu124``: the package list has
    no build), ``cuda_devices`` (names, ``[]`` without CUDA), ``cuda_device_count``, ``cuda`` and
    ``cudnn`` versions, ``torch_threads`` (intra-op threads of this process)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cudnn = torch.backends.cudnn.version() if count else None
    return {"torch": torch.__version__, "cuda_devices": [torch.cuda.get_device_name(i) for i in range(count)],
            "cuda_device_count": count,
            "cuda": torch.version.cuda, "cudnn": cudnn, "torch_threads": torch.get_num_threads()}


def slurm_job(environ: Mapping[str, str] | None = None) -> dict[str, str | None] | None:
    """The SLURM job this process runs in (:data:`SLURM_VARIABLES`), or None outside SLURM."""
    environ = os.environ if environ is None else environ
    if "SLURM_JOB_ID" not in environ:
        return None
    found = {key: environ.get(variable) for key, variable in SLURM_VARIABLES.items()}
    found["nodelist"] = found["nodelist"] or environ.get("SLURM_NODELIST")
    found["nodes"] = found["nodes"] or environ.get("SLURM_NNODES")
    return found
