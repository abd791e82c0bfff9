"""Real small file systems for the tests of full and read-only disks: tmpfs mounts (the test is skipped
where this machine may not mount)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def mount_tmpfs(where: Path, options: str) -> Path:
    """Mount a tmpfs with ``options`` (``ro,size=1m``, ``size=3m``) at ``where``; unmount it with
    :func:`unmount`."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return where


def unmount(where: Path) -> None:
    subprocess.run(["umount", str(where)], check=False)
