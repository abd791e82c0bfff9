"""The last step of every atomic write: a finished temporary file takes the target's name."""
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
