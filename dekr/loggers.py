"""Weights & Biases logging that never waits for the network, and runs named after what they are.

Mode selection (:func:`wandb_mode`): ``WANDB_MODE`` from the environment wins (``disabled``,
``offline``, ``online``); otherwise ``online`` only when an API key is configured and the W&B
server answers within two seconds, else ``offline`` (sync later with ``wandb sync DIR``).

Run identity (:func:`run_identity`, applied by ``scripts/train.py`` through :func:`describe_wandb_runs`):
a sweep point is named by its swept values and seed (``offset_block=basic disentangled=false seed=1``),
grouped by its sweep and tagged with the same ``key=value`` strings; a single run by its config and
run folder (``demo · runs/demo-lr3``).
"""
from __future__ import annotations

import json
import logging
import netrc
import os
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from dekr.run_names import format_value, short_keys

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
    ``scripts/train.py``). Before the run starts, :meth:`describe` sets its identity and adds to
    its config, :meth:`log_run_config` gives it the whole run config and :meth:`summarize` asks for a
    metric's best and last value in its summary.

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
        # Lightning always hands wandb.init an `anonymous` setting (None unless asked for), and W&B
        # warns that the setting has no effect whenever it is given at all: give it only when asked.
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        self._summaries: dict[str, str] = {}  # metric -> "max" / "min"
        self._whole_config = False  # log_run_config was given the run's whole config

    @property
    def identity(self) -> dict[str, Any]:
        """The run's ``name``, ``group`` and ``tags`` as configured so far (None / ``[]``: W&B's defaults)."""
        return {"name": self._wandb_init.get("name"), "group": self._wandb_init.get("group"),
                "tags": list(self._wandb_init.get("tags") or [])}

    def describe(self, name: str | None = None, group: str | None = None, tags: Sequence[str] | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        """Set the run's ``name``, ``group`` and ``tags`` (those given) and add ``config`` to its config.

        Before the run starts they go to ``wandb.init``; after, ``config`` updates the run's config (rank
        0) and the identity stays what it was (W&B fixes the group at the start).
        """
        config = _json_values(dict(config or {}))
        if self._experiment is None:
            given = {"name": name, "group": group, "tags": list(tags) if tags is not None else None}
            self._wandb_init.update({key: value for key, value in given.items() if value is not None})
            if config:
                self._wandb_init["config"] = {**(self._wandb_init.get("config") or {}), **config}
        elif rank_zero_only.rank == 0:
            if name is not None or group is not None or tags is not None:
                log.warning("W&B run already started: its name, group and tags stay as they were")
            if config:
                self._experiment.config.update(config, allow_val_change=True)

    def log_run_config(self, config: Mapping[str, Any]) -> None:
        """Log the run's whole config (``scripts/train.py``'s: model, data, trainer, seed, sweep point)
        as the W&B config, instead of the module's hyperparameters (its ``model`` section), which
        Lightning would log again at the top level."""
        self.describe(config=config)
        self._whole_config = True

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        if not self._whole_config:
            super().log_hyperparams(params)

    def summarize(self, metric: str, mode: str = "max") -> None:
        """Keep ``metric``'s best (``mode``: ``max`` or ``min``) and last value in the run summary, as
        ``{"max": best, "last": last}`` (W&B's columns ``metric.max`` and ``metric.last``)."""
        if mode not in ("max", "min"):
            raise ValueError(f"summary mode must be max or min, got {mode!r}")
        self._summaries[metric] = mode
        if self._experiment is not None and rank_zero_only.rank == 0:
            self._define_summaries(self._experiment)

    @property
    def experiment(self) -> Any:
        starting = self._experiment is None
        run = super().experiment
        if starting and self._experiment is not None:  # just started (rank 0)
            self._define_summaries(run)
        return run

    def _define_summaries(self, run: Any) -> None:
        if getattr(run, "define_metric", None) is None:
            return
        # a metric's own definition replaces the "*" one Lightning made: keep its x-axis
        step = "global_step" if self._wandb_init.get("sync_tensorboard") else "trainer/global_step"
        for metric, mode in self._summaries.items():
            run.define_metric(metric, step_metric=step, step_sync=True, summary=f"{mode},last")

    def set_save_dir(self, save_dir: str | os.PathLike) -> None:
        """Point the (not yet started) run at ``save_dir``."""
        if self._experiment is None:
            self._save_dir = os.fspath(save_dir)
            self._wandb_init["dir"] = self._save_dir
            Path(self._save_dir).mkdir(parents=True, exist_ok=True)


# Arguments of scripts/train.py that set the W&B identity themselves (they win over the automatic one).
_IDENTITY_ARGUMENT = re.compile(r"^--trainer\.logger(?:\.init_args)?\.(name|group|tags)\+?(?:=|$)")
_IDENTITY_VARIABLES = {"name": "WANDB_NAME", "group": "WANDB_RUN_GROUP", "tags": "WANDB_TAGS"}


def explicit_identity(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> set[str]:
    """Which of ``name``, ``group``, ``tags`` the user set: on the command line
    (``--trainer.logger.init_args.name X``, ``--trainer.logger.tags+=x``) or through W&B's variables
    (``WANDB_NAME``, ``WANDB_RUN_GROUP``, ``WANDB_TAGS``)."""
    environ = os.environ if environ is None else environ
    found = {key for key, variable in _IDENTITY_VARIABLES.items() if environ.get(variable)}
    for arg in argv:
        match = _IDENTITY_ARGUMENT.match(arg)
        if match:
            found.add(match.group(1))
    return found


def run_identity(config_name: str | None, run_folder: str | os.PathLike,
                 sweep: Mapping[str, Any] | None = None, seed: Any = None) -> dict[str, Any]:
    """The W&B ``name``, ``group`` and ``tags`` of a run.

    A sweep point (``sweep``: ``name``, ``point``, ``seed``, ``parameters`` {dotted key: value}, as
    ``scripts/sweep.py`` passes it): named ``key=value`` per swept value (:func:`short_keys`,
    :func:`format_value`) and ``seed=N`` (the sweep's seed, else ``seed``), grouped by the sweep's
    name, tagged with the same strings. A single run: named ``<config_name> · <run_folder>`` (the
    folder relative to the working directory when inside it), no group, no tags.
    """
    if not sweep:
        folder = _shown_path(run_folder)
        return {"name": f"{config_name} · {folder}" if config_name else folder, "group": None, "tags": []}
    parameters = dict(sweep.get("parameters") or {})
    keys = short_keys(list(parameters))
    pairs = [f"{key}={format_value(value)}" for key, value in zip(keys, parameters.values())]
    seed = sweep.get("seed", seed)
    if seed is not None and not isinstance(seed, bool):
        pairs.append(f"seed={seed}")
    name = " ".join(pairs) or f"{sweep.get('name', 'sweep')} point {sweep.get('point')}"
    # W&B refuses tags longer than 64 characters
    return {"name": name, "group": sweep.get("name"), "tags": [pair[:64] for pair in pairs]}


def describe_wandb_runs(loggers: Any, *, config_name: str | None, run_folder: str | os.PathLike,
                        sweep: Mapping[str, Any] | None = None, seed: Any = None,
                        explicit: Iterable[str] = (), config: Mapping[str, Any] | None = None) -> None:
    """Name, group and tag each :class:`WandbLogger` among ``loggers`` (one, a list or None) by
    :func:`run_identity`, and log ``config`` (the whole run config) as its config.

    What the user set (``explicit``: :func:`explicit_identity`) stays. A name from a config file is
    the label of a single run in place of ``config_name`` (a sweep point is named by its values);
    a group from a config file stays unless the run is a sweep point; tags from a config file come
    before the automatic ones.
    """
    explicit = set(explicit)
    for logger in loggers if isinstance(loggers, (list, tuple)) else [loggers]:
        if not isinstance(logger, WandbLogger):
            continue
        configured = logger.identity
        auto = run_identity(configured["name"] or config_name, run_folder, sweep, seed)
        logger.describe(
            name=None if "name" in explicit else auto["name"],
            group=None if "group" in explicit else auto["group"],
            tags=None if "tags" in explicit else list(dict.fromkeys([*configured["tags"], *auto["tags"]])))
        if config is not None:
            logger.log_run_config(config)


def _shown_path(path: str | os.PathLike) -> str:
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _json_values(value: Any) -> Any:
    """``value`` with what JSON cannot hold (paths, classes) as strings."""
    return json.loads(json.dumps(value, default=str))
