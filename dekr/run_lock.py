"""One training per run folder: a lock held for the whole ``fit``, with the holder's host and pid.

Two trainings writing one folder would mix their checkpoints, ``config.yaml`` and ``metrics.json``.
The lock is an operating-system file lock (``filelock``) on ``<run>/.run.lock``: the system releases
it when its process dies, however it dies, so a lock left by a killed run is taken over by the next
one. ``<run>/.run.lock.json`` names the holder (host, pid, start time, command) for the refusal
message. On file systems without working ``flock`` (some NFS mounts), ``filelock`` falls back to a
lock file whose presence is the lock.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_NAME = ".run.lock"
HOLDER_NAME = ".run.lock.json"


class RunFolderBusy(RuntimeError):
    """Another training holds the run folder."""


def _holder(folder: Path) -> str:
    try:
        info = json.loads((folder / HOLDER_NAME).read_text())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"


@contextmanager
def hold_run_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder`` (created if needed) for one training; :class:`RunFolderBusy` if another holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_NAME, blocking=False)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderBusy(f"run folder {folder} is in use by another training ({_holder(folder)}); wait for it, "
                            "stop it, or choose another --trainer.default_root_dir") from None
    holder = folder / HOLDER_NAME
    try:
        holder.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                      "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                      "command": " ".join(sys.argv)}))
        yield folder
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def run_folder_holder(folder: str | os.PathLike) -> dict[str, str] | None:
    """Who trains in ``folder`` now, as recorded by :func:`hold_run_folder` (host, pid, started, command),
    without touching the lock; None when nobody does. A record left by a killed process on this host
    (its pid gone) counts as nobody; one from another host is trusted."""
    try:
        info = json.loads((Path(folder) / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return None
    if info.get("host") == socket.gethostname():
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            return None
        except (PermissionError, KeyError, ValueError):
            pass
    return info
