"""Weights & Biases logging that never waits for the network.

Mode selection (:func:`wandb_mode`): ``WANDB_MODE`` from the environment wins (``disabled``,
``offline``, ``online``); otherwise ``online`` only when an API key is configured and the W&B
server answers within two seconds, else ``offline`` (sync later with ``wandb sync DIR``).
"""
from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

log = logging.getLogger(__name__)


def _api_key_configured(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(os.environ.get("NETRC", str(Path.home() / ".netrc"))).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_mode() -> str:
    """``disabled`` / ``offline`` / ``online`` as described in the module docstring."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return "offline" if env == "dryrun" else env
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    if _api_key_configured(host) and _reachable(host):
        return "online"
    return "offline"


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` with the mode chosen by :func:`wandb_mode` (``mode`` overrides)
    and ``save_dir`` defaulting to the trainer's run folder (``default_root_dir``; set by
    ``scripts/train.py``).

    Args:
        project, entity, name, tags, group: the W&B run identity (from the run config).
        mode: ``None`` (automatic), ``online``, ``offline`` or ``disabled``.
        save_dir: where the ``wandb/`` folder goes.
        log_model: upload checkpoints as artifacts (online only).
        **kwargs: passed on to ``wandb.init``.
    """

    def __init__(self, project: str = "dekr", entity: str | None = None, name: str | None = None,
                 tags: list[str] | None = None, group: str | None = None, mode: str | None = None,
                 save_dir: str | None = None, log_model: bool = False, **kwargs: Any) -> None:
        self.mode = mode or wandb_mode()
        if self.mode not in ("online", "offline", "disabled"):
            raise ValueError(f"W&B mode must be online, offline or disabled, got {self.mode!r}")
        if self.mode != "online":
            log_model = False
        if self.mode == "offline" and not os.environ.get("WANDB_MODE"):
            log.info("W&B: no API key or no network: logging offline (upload later with `wandb sync`)")
        super().__init__(project=project, entity=entity, name=name, tags=tags, group=group, mode=self.mode,
                         save_dir=save_dir, log_model=log_model, **kwargs)

    def set_save_dir(self, save_dir: str | os.PathLike) -> None:
        """Point the (not yet started) run at ``save_dir``."""
        if self._experiment is None:
            self._save_dir = os.fspath(save_dir)
            self._wandb_init["dir"] = self._save_dir
            Path(self._save_dir).mkdir(parents=True, exist_ok=True)
