"""Atomic writes: a finished temporary file takes the target's name in one step."""
from __future__ import annotations

import os
from pathlib import Path


def publish(tmp: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Give ``tmp`` (written and fsynced in ``dest``'s folder) the permissions a plain ``open()``
    would (``mkstemp`` creates 0600 files), then rename it over ``dest`` in one step."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, dest)
    return Path(dest)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` in one step (a temporary file beside it, fsync, :func:`publish`): a kill
    mid-write leaves the previous file. On failure (a full disk) the temporary file is removed and the
    OSError names ``path``."""
    return _atomic_write(path, text, "w")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write_text` for bytes (an encoded image)."""
    return _atomic_write(path, data, "wb")


def _atomic_write(path: str | os.PathLike, data: str | bytes, mode: str) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return publish(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
