"""Running a repo script (``scripts/<name>``) in a subprocess for the tests: clean env, clear failures."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dekr.cpu_threads import usable_cpus

REPO = Path(__file__).resolve().parents[2]

# Variables of the calling shell (a SLURM job, a DDP launch, W&B login) that must not leak into a run.
LEAKING_PREFIXES = ("WANDB_", "SLURM_", "MASTER_", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "RANK")


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
