"""Running a repo script (``scripts/<name>``) in a subprocess for the tests: clean env, clear failures."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Variables of the calling shell (a SLURM job, a DDP launch, W&B login) that must not leak into a run.
LEAKING_PREFIXES = ("WANDB_", "SLURM_", "MASTER_", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "RANK")


def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by the cgroup's CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), None if unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]  # "max 100000" or "200000 100000"
    except (OSError, ValueError):
        try:
            quota = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text().strip()  # "-1": unlimited
            period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    return max(1, int(quota) // int(period))


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity, capped by a cgroup CPU quota (a container limited
    to 2 CPUs on a 64-core host still sees all 64 in its affinity)."""
    return min(len(os.sched_getaffinity(0)), _cgroup_cpu_limit() or os.cpu_count() or 1)


def threads_per_worker() -> int:
    """The usable CPUs divided among the pytest-xdist workers (all of them without xdist).

    More threads than cores make OpenMP's spinning threads wait for each other: two workers running
    two-thread trainings on two cores were 10-20x slower than one thread each.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, usable_cpus() // workers)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment less the launcher / W&B variables, with the repo importable,
    one OpenMP thread and no netrc; ``extra`` added last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKING_PREFIXES)}
    env.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NETRC": "/nonexistent"}, **extra)
    return env


def run_script(script: str, args: list[str], *, cwd: Path | None = None, timeout: int = 600,
               check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python scripts/<script> *args`` with ``env`` (default :func:`clean_env`), output captured as text.

    With ``check``, a non-zero exit raises an AssertionError showing the tails of stdout and stderr.
    """
    command = [sys.executable, str(REPO / "scripts" / script), *args]
    result = subprocess.run(command, cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-6000:]}")
    return result
