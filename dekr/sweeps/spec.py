"""The sweep file and the points it expands to.

A sweep file (bare names are looked up in ``configs/sweeps/``)::

    name: adaptive_conv_ablation
    config: w32_coco.yaml          # the base run config (train.py --config)
    method: grid                   # grid | random
    num_samples: 8                 # random: number of configurations
    seed: 0                        # random: the sampler's seed
    seeds: [0, 1, 2]               # every configuration runs once per seed (--seed_everything)
    metric: val/AP                 # the table's metric (its best value per run, and its last)
    mode: max                      # max | min: which value of the metric is the best
    args: [--trainer.max_epochs, "140"]   # extra train.py arguments for every point
    slurm:                         # resources of one point (one array task)
      nodes: 1
      gpus_per_node: 4             # one training process per GPU (0: CPU tasks, see tasks_per_node)
      cpus_per_task: 8
      time: "48:00:00"
    parameters:                    # dotted train.py keys
      model.net.offset_block: [adaptive, basic]          # grid / random choice
      model.optim.lr: {distribution: log_uniform, min: 1.0e-4, max: 3.0e-3}   # random only

A *configuration* is one combination of parameter values; a *point* is a configuration with one
seed, i.e. one training run. Points are numbered configuration-major: configuration ``c`` with its
``s``-th seed is point ``c * len(seeds) + s``.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dekr.config import resolve_config_path
from dekr.run_names import format_value, short_keys

SWEEP_DIR = Path(__file__).resolve().parents[2] / "configs" / "sweeps"
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform")


class SweepError(ValueError):
    """A sweep file, campaign folder or sweep command that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class SlurmResources:
    """What one point (one SLURM array task) is given.

    Args:
        nodes: nodes per point (``--nodes``; ``trainer.num_nodes``).
        gpus_per_node: GPUs per node (``--gpus-per-node``; 0 for CPU-only tasks).
        tasks_per_node: training processes per node (``--ntasks-per-node``; ``trainer.devices``);
            default one per GPU, or 1 without GPUs.
        cpus_per_task: CPU cores per process (data-loader workers).
        time: the time limit (``--time``), e.g. ``"48:00:00"``.
        partition: ``--partition``, if any.
        mem: ``--mem`` (e.g. ``"0"``: all of the node's memory), if any.
        sbatch_args: further sbatch options, e.g. ``["--account", "vision"]``.
    """

    nodes: int = 1
    gpus_per_node: int = 1
    tasks_per_node: int | None = None
    cpus_per_task: int = 8
    time: str = "48:00:00"
    partition: str | None = None
    mem: str | None = None
    sbatch_args: tuple[str, ...] = ()

    @property
    def processes_per_node(self) -> int:
        return self.tasks_per_node or max(self.gpus_per_node, 1)

    def sbatch_options(self) -> list[str]:
        options = [f"--nodes={self.nodes}", f"--ntasks-per-node={self.processes_per_node}",
                   f"--cpus-per-task={self.cpus_per_task}", f"--time={self.time}"]
        if self.gpus_per_node:
            options.append(f"--gpus-per-node={self.gpus_per_node}")
        if self.partition:
            options.append(f"--partition={self.partition}")
        if self.mem is not None:
            options.append(f"--mem={self.mem}")
        return options + list(self.sbatch_args)


@dataclass(frozen=True)
class Point:
    """One training run of the campaign: configuration ``configuration`` with ``seed``.

    ``parameters`` maps dotted train.py keys to values; ``seed`` is ``None`` when the sweep has no
    ``seeds`` (the base config's ``seed_everything`` then applies)."""

    index: int
    configuration: int
    seed: int | None
    parameters: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        """``offset_block=basic disentangled=false seed=1``: the point's swept values, short keys."""
        values = [f"{key}={value}" for key, value in named_values(self.parameters).items()]
        return " ".join(values + ([f"seed={self.seed}"] if self.seed is not None else []))


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file (see the module docstring for its fields)."""

    name: str
    parameters: dict[str, Any]
    config: str | None = None
    method: str = "grid"
    num_samples: int = 10
    seed: int = 0
    seeds: tuple[int, ...] = ()
    metric: str = "val/AP"
    mode: str = "max"
    args: tuple[str, ...] = ()
    slurm: SlurmResources = field(default_factory=SlurmResources)

    def configurations(self) -> list[dict[str, Any]]:
        """The parameter combinations, in a deterministic order."""
        keys = list(self.parameters)
        if self.method == "grid":
            return [dict(zip(keys, combo)) for combo in itertools.product(*(self.parameters[k] for k in keys))]
        rng = random.Random(self.seed)
        return [{k: _sample(self.parameters[k], rng) for k in keys} for _ in range(self.num_samples)]

    def points(self) -> list[Point]:
        """Every configuration once per seed, configuration-major."""
        seeds: tuple[int | None, ...] = self.seeds or (None,)
        return [Point(c * len(seeds) + s, c, seed, configuration)
                for c, configuration in enumerate(self.configurations()) for s, seed in enumerate(seeds)]


KNOWN_FIELDS = {"name", "config", "method", "num_samples", "seed", "seeds", "metric", "mode", "args", "parameters",
                "slurm"}


def resolve_sweep(name: str | Path) -> Path:
    """A sweep file's path: ``name`` itself, or ``configs/sweeps/<name>[.yaml]``."""
    return resolve_config_path(name, SWEEP_DIR, kind="sweep")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_sweep(path: Path, text: str | None = None) -> SweepSpec:
    """Parse and check a sweep file (``text``: its content as frozen in a campaign, else read from
    ``path``); :class:`SweepError` names the file and the field at fault."""
    try:
        raw = yaml.safe_load(path.read_text() if text is None else text) or {}
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: expected a mapping of sweep fields, got {type(raw).__name__}")
    unknown = set(raw) - KNOWN_FIELDS
    if unknown:
        raise SweepError(f"{path}: unknown sweep field(s) {sorted(unknown)}; known: {sorted(KNOWN_FIELDS)}")
    if not raw.get("parameters") or not isinstance(raw["parameters"], dict):
        raise SweepError(f"{path}: no parameters to sweep")
    method = raw.get("method", "grid")
    if method not in ("grid", "random"):
        raise SweepError(f"{path}: method must be grid or random, got {method!r}")
    if raw.get("mode", "max") not in ("max", "min"):
        raise SweepError(f"{path}: mode must be max or min, got {raw['mode']!r}")
    for key, values in raw["parameters"].items():
        _check_parameter(path, method, key, values)
    seeds = raw.get("seeds") or []
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise SweepError(f"{path}: seeds must be a list of distinct integers, got {raw.get('seeds')!r}")
    if "seed_everything" in {key.split(".")[0] for key in raw["parameters"]}:
        raise SweepError(f"{path}: sweep seeds with `seeds: [0, 1, 2]`, not as a parameter")
    args = raw.get("args") or []
    if not isinstance(args, list):
        raise SweepError(f"{path}: args must be a list of train.py arguments, got {args!r}")
    return SweepSpec(name=str(raw.get("name") or path.stem), parameters=raw["parameters"], config=raw.get("config"),
                     method=method, num_samples=int(raw.get("num_samples", 10)), seed=int(raw.get("seed", 0)),
                     seeds=tuple(seeds), metric=raw.get("metric", "val/AP"), mode=raw.get("mode", "max"),
                     args=tuple(str(a) for a in args), slurm=_slurm_resources(path, raw.get("slurm") or {}))


def _check_parameter(path: Path, method: str, key: str, values: Any) -> None:
    if isinstance(values, dict):
        if method == "grid":
            raise SweepError(f"{path}: parameter {key}: distributions need method: random (grid takes lists)")
        if values.get("distribution") not in DISTRIBUTIONS:
            raise SweepError(f"{path}: parameter {key}: distribution must be one of {', '.join(DISTRIBUTIONS)}")
        lo, hi = values.get("min", 0), values.get("max", 0)
        if not lo < hi or (values["distribution"] == "log_uniform" and lo <= 0):
            raise SweepError(f"{path}: parameter {key}: needs 0 < min < max (log) or min < max")
    elif not isinstance(values, list) or not values:
        raise SweepError(f"{path}: parameter {key}: expected a non-empty list of values or a distribution")


def _slurm_resources(path: Path, raw: Any) -> SlurmResources:
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: slurm must be a mapping of resources, got {raw!r}")
    known = set(SlurmResources.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise SweepError(f"{path}: unknown slurm field(s) {sorted(unknown)}; known: {sorted(known)}")
    for key in ("nodes", "cpus_per_task"):
        if key in raw and (not isinstance(raw[key], int) or raw[key] < 1):
            raise SweepError(f"{path}: slurm.{key} must be a positive integer, got {raw[key]!r}")
    for key in ("gpus_per_node", "tasks_per_node"):
        if raw.get(key) is not None and (not isinstance(raw[key], int) or raw[key] < 0):
            raise SweepError(f"{path}: slurm.{key} must be a non-negative integer, got {raw[key]!r}")
    values = dict(raw)
    if "time" in values:
        values["time"] = str(values["time"])
    if "mem" in values and values["mem"] is not None:
        values["mem"] = str(values["mem"])
    values["sbatch_args"] = tuple(str(a) for a in values.get("sbatch_args") or ())
    return SlurmResources(**values)


def _sample(values: Any, rng: random.Random) -> Any:
    if isinstance(values, list):
        return rng.choice(values)
    lo, hi = values["min"], values["max"]
    if values["distribution"] == "uniform":
        return rng.uniform(lo, hi)
    if values["distribution"] == "log_uniform":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return rng.randint(int(lo), int(hi))


def cli_value(value: Any) -> str:
    """A parameter value as one train.py command-line argument."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def named_values(parameters: dict[str, Any]) -> dict[str, str]:
    """``{"model.net.offset_block": "basic"}`` -> ``{"offset_block": "basic"}``: the short keys and values
    that name a point in W&B (:func:`dekr.loggers.run_identity`), its label and the results table."""
    return dict(zip(short_keys(list(parameters)), (format_value(v) for v in parameters.values())))
