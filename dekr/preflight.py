"""Checks that a training run can start, made once in the launching process.

A DDP run started on a machine that cannot run it used to fail late and many times: each of the
N spawned processes, after the W&B run had started, printed the same missing-file error. The
checks here read only configuration and the file system (no dataset is parsed, no process or
logger is started), so that a launcher can call them before anything else and report every
problem in one message: the requested devices against the accelerators present, the batch split,
the dataset files, the pretrained weights and the run folder.
"""
from __future__ import annotations

import importlib
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_only

from dekr.data.datamodule import DEKRDataModule
from dekr.models.backbone import PUBLISHED_VARIANTS, PretrainedBackboneError, ensure_pretrained_backbone
from dekr.run_lock import HOLDER_NAME, LOCK_NAME, run_folder_holder
from dekr.zoo import ZOO

log = logging.getLogger(__name__)


class PreflightError(ValueError):
    """A run cannot start; ``problems`` holds one line per cause."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the run cannot start ({len(self.problems)} problem(s)):\n{lines}")


def visible_gpus() -> int:
    """Accelerators Lightning's ``auto`` would use: CUDA devices, else 1 for Apple MPS, else 0."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    mps = getattr(torch.backends, "mps", None)
    return 1 if mps is not None and mps.is_available() else 0


def _requested_count(devices: Any) -> int | None:
    """Devices asked for: an int, a list of indices or an index string ("0,1"); None for auto / -1."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return None
        if "," in text:
            return len([d for d in text.split(",") if d.strip()])
        devices = int(text)
    return None if devices == -1 else int(devices)


@dataclass
class DevicePlan:
    """How many processes a run starts: ``devices`` per node x ``num_nodes``."""

    accelerator: str
    devices: int
    num_nodes: int = 1
    problems: list[str] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes


def plan_devices(accelerator: Any, devices: Any, num_nodes: int = 1, gpus: int | None = None) -> DevicePlan:
    """Check ``trainer.accelerator`` / ``trainer.devices`` against this machine (``gpus`` visible
    accelerators, default :func:`visible_gpus`) and return the planned device count.

    Lightning's ``accelerator: auto`` falls back to the CPU when no GPU is visible, and then
    ``devices: 8`` starts 8 CPU processes: that is refused here unless the CPU was asked for.
    """
    gpus = visible_gpus() if gpus is None else gpus
    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    name = {"cuda": "gpu", "cudaaccelerator": "gpu", "cpuaccelerator": "cpu"}.get(name, name)
    try:
        requested = _requested_count(devices)
    except ValueError:
        return DevicePlan(name, 1, num_nodes, [f"trainer.devices={devices!r} is not a count, a list or 'auto'"])
    problems: list[str] = []
    if name == "cpu":
        count = requested or 1
    elif name in ("gpu", "mps") and gpus == 0:
        problems.append(f"trainer.accelerator={name} but no GPU is visible on this machine "
                        "(use --trainer.accelerator auto or cpu)")
        count = requested or 1
    elif gpus == 0:  # auto without GPU: the CPU
        name = "cpu"
        if requested is not None and requested > 1:
            problems.append(
                f"trainer.devices={devices} asks for {requested} devices but no GPU is visible: "
                f"accelerator '{accelerator}' would start {requested} CPU processes. Use --trainer.devices auto (all GPUs "
                "there are, one CPU process without; the 40-image step is kept by gradient accumulation), or "
                "--trainer.accelerator cpu to start several CPU processes on purpose")
        count = requested or 1
    else:
        name = "gpu" if name == "auto" else name
        count = gpus if requested is None else requested
        if requested is not None and requested > gpus:
            problems.append(f"trainer.devices={devices} asks for {requested} GPUs but this machine has {gpus}; "
                            "use --trainer.devices auto (every GPU there is)")
    if int(num_nodes) < 1:
        problems.append(f"trainer.num_nodes must be >= 1, got {num_nodes}")
    return DevicePlan(name, max(int(count), 1), max(int(num_nodes), 1), problems)


def check_run_folder(path: str | os.PathLike) -> list[str]:
    """The run folder can be created (or exists and is writable); nothing is created here."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        return [f"run folder {path} (trainer.default_root_dir) exists and is not a folder"]
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        where = "is not writable" if existing == path else f"cannot be created: {existing} is not writable"
        return [f"run folder {path} (trainer.default_root_dir) {where}"]
    return []


def earlier_run(folder: str | os.PathLike) -> list[str]:
    """What an earlier run left in ``folder``: its entries, sorted, but the run lock's own files (the
    operating-system lock file stays after every run); [] when the folder is absent or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        return [folder.name] if folder.exists() else []
    return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()
                  if p.name not in (LOCK_NAME, HOLDER_NAME))


def one_of_many_processes(num_nodes: int = 1) -> bool:
    """Whether this process is one of several started for one run by a launcher outside it: a DDP worker
    (Lightning's subprocess launcher, torchrun: ``LOCAL_RANK``, ``RANK``), one of several SLURM tasks, a
    node of a multi-node run. Such processes cannot agree on a new run folder, and a worker finds the
    folder its launcher has begun to write: they take the folder as configured."""
    env = os.environ
    return (any(key in env for key in ("RANK", "LOCAL_RANK", "NODE_RANK")) or int(num_nodes) > 1
            or int(env.get("SLURM_NTASKS", "1") or 1) > 1)


def continues_a_run(config: Mapping[str, Any], folder: str | os.PathLike) -> bool:
    """Whether the run continues one in ``folder`` rather than starting one: ``--ckpt_path`` given (``last``,
    also with ``--resume_if_present`` and nothing to resume), or a SLURM requeue checkpoint
    (``hpc_ckpt_*.ckpt``) that Lightning resumes by itself under SLURM."""
    if config.get("ckpt_path") is not None:
        return True
    return any(Path(folder).glob("hpc_ckpt_*.ckpt")) and SLURMEnvironment.detect()  # (Lightning's own test)


def run_folder_for(folder: str | os.PathLike, config: Mapping[str, Any], named: bool) -> Path:
    """The folder a training goes into: ``folder``, or, for a new run into a ``folder`` that holds an
    earlier one (:func:`earlier_run`), the first of ``folder-2``, ``folder-3``, ... that holds none, unless
    the command line ``named`` the folder (:func:`check_new_run_folder` then refuses), the run continues one
    (:func:`continues_a_run`) or this process is one of several (:func:`one_of_many_processes`)."""
    folder = Path(folder)
    trainer = config.get("trainer") or {}
    if named or continues_a_run(config, folder) or one_of_many_processes(trainer.get("num_nodes") or 1):
        return folder
    candidate, number = folder, 1
    # a folder a running training holds may have no file yet: it is taken as well
    while earlier_run(candidate) or run_folder_holder(candidate) is not None:
        number += 1
        candidate = folder.with_name(f"{folder.name}-{number}")
    return candidate


def check_new_run_folder(folder: str | os.PathLike, config: Mapping[str, Any]) -> list[str]:
    """A new run does not go into a folder that holds an earlier one (their checkpoints, ``metrics.json``
    and ``config.yaml`` would mix); a folder another training holds now is left to the run lock, whose
    refusal names the holder."""
    trainer = config.get("trainer") or {}
    if continues_a_run(config, folder) or one_of_many_processes(trainer.get("num_nodes") or 1) \
            or run_folder_holder(folder) is not None:
        return []
    found = earlier_run(folder)
    if not found:
        return []
    listed = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
    return [f"run folder {folder} (--trainer.default_root_dir) holds an earlier run ({listed}): resume it "
            "with --ckpt_path last, or name a new folder (without the option, a new run goes to a fresh "
            "numbered folder beside the configured one)"]


def last_checkpoint(run_folder: str | os.PathLike) -> Path | None:
    """The newest ``last*.ckpt`` of a run folder (what ``--ckpt_path last`` resumes), None if there is none."""
    found = sorted(Path(run_folder, "checkpoints").glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


#: Free space an output file needs at least (a checkpoint of the large models is a few hundred MB;
#: results json files are smaller): below it, a script refuses before its work rather than after.
MIN_FREE_BYTES = 64 * 2**20


def check_output_file(path: str | os.PathLike, option: str, min_free_bytes: int = MIN_FREE_BYTES) -> list[str]:
    """A file a script will write can be written: not a folder, its folder exists or can be created
    in a writable place, and the file system has ``min_free_bytes`` free. Checked before the work,
    so that a bad ``--out`` does not lose it; nothing is created here."""
    path = Path(path).absolute()
    if path.is_dir():
        return [f"{option} {path} is a folder; give a file name"]
    existing = path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK) \
            or (path.exists() and not os.access(path, os.W_OK)):
        where = path if path.exists() else existing
        return [f"{option} {path} cannot be written: {where} is not writable (read-only file system or permissions)"]
    free = shutil.disk_usage(existing).free
    if free < min_free_bytes:
        return [f"{option} {path} cannot be written: {free / 2**20:.1f} MiB free on its file system, "
                f"{min_free_bytes / 2**20:.0f} MiB needed"]
    return []


def check_resume_file(path: Path | None) -> list[str]:
    """A checkpoint to resume from loads as the training will load it: weights-only (tensors and plain
    containers, no arbitrary pickled objects), memory-mapped so that a large file is not read whole."""
    if path is None:
        return []
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # truncated zip, a foreign pickle, not a torch file
        return [f"checkpoint to resume from {path} (--ckpt_path) cannot be read weights-only (truncated, corrupt "
                f"or not a training checkpoint?): {type(err).__name__}: {str(err).strip()[:200]}"]
    return []


def check_file_option(path: str | None, option: str, what: str) -> list[str]:
    """A file named by an option exists (None: nothing to check)."""
    if path and not Path(path).is_file():
        return [f"{what} {path} ({option}) does not exist"]
    return []


def _say(message: str, *args: Any) -> None:
    """Log once per run: every DDP process and SLURM task runs the launcher code."""
    if rank_zero_only.rank == 0:
        log.info(message, *args)


def datamodule_from_config(data: Mapping[str, Any] | None) -> DEKRDataModule | None:
    """The configured datamodule (``{"class_path": ..., "init_args": {...}}``), built without
    reading any file; None for a datamodule that is not a :class:`DEKRDataModule`."""
    if not data or not data.get("class_path"):
        return None
    module_name, _, class_name = data["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not issubclass(cls, DEKRDataModule):
        return None
    return cls(**dict(data.get("init_args") or {}))


def check_training_run(config: Mapping[str, Any], run_folder: str | os.PathLike) -> None:
    """Every check of a training run that needs no dataset parsing; raises :class:`PreflightError`.

    ``config`` is the run config as a plain dict (``model``, ``data``, ``trainer``, ``ckpt_path``:
    the LightningCLI layout of ``scripts/train.py``); ``run_folder`` the folder the run goes into
    (:func:`run_folder_for`). Logs the data mode and the backbone weights. The ImageNet backbone
    weights are fetched (into timm's cache, when the network allows) only when everything else is in
    order, so that a missing dataset is reported within seconds.
    """
    trainer = config.get("trainer") or {}
    plan = plan_devices(trainer.get("accelerator", "auto"), trainer.get("devices", "auto"),
                        trainer.get("num_nodes", 1))
    problems = list(plan.problems)
    datamodule = None
    try:
        datamodule = datamodule_from_config(config.get("data"))
    except (ValueError, TypeError) as err:
        problems.append(f"data: {err}")
    if datamodule is not None:
        problems += datamodule.missing_files(("train", "val"))
        try:  # (the datamodule logs the split when the fit sets it up)
            datamodule.batch_split(plan.world_size, int(trainer.get("accumulate_grad_batches") or 1))
        except ValueError as err:
            problems.append(str(err))
        _say("data: %s", "official_quirks on: the official data, targets and flip" if datamodule.official_quirks
             else "official_quirks off: our documented fixes (README, 'Where we differ from the official code')")
    problems += check_run_folder(run_folder) or check_new_run_folder(run_folder, config)
    model = config.get("model") or {}
    net = model.get("net") or {}
    init_from = model.get("init_from")
    if not (init_from and init_from in ZOO):  # a zoo name is fetched when the fit starts
        problems += check_file_option(init_from, "--model.init_from", "fine-tuning checkpoint")
    ckpt_path = config.get("ckpt_path")
    if ckpt_path == "last" and not config.get("resume_if_present") and last_checkpoint(run_folder) is None:
        problems.append(f"--ckpt_path last: there is no checkpoint to resume in {Path(run_folder) / 'checkpoints'} "
                        "(no last*.ckpt); leave --ckpt_path out to start a new run, or add --resume_if_present "
                        "to resume only when there is one")
    elif ckpt_path == "last":
        problems += check_resume_file(last_checkpoint(run_folder))
    elif ckpt_path not in (None, "best", "hpc", "registry"):
        problems += check_file_option(ckpt_path, "--ckpt_path", "checkpoint to resume from") \
            or check_resume_file(Path(ckpt_path))
    pretrained = net.get("pretrained_backbone", False)
    backbone = net.get("backbone", "hrnet_w32")
    if init_from:  # the fine-tuning file brings the backbone (DEKRModule.on_fit_start)
        _say("backbone: %s from --model.init_from (its ImageNet weights are not read)", backbone)
    elif pretrained:
        # Checked with the other problems, so that one message lists them all; a missing hub file
        # is only downloaded when nothing else stops the run.
        try:
            _say("backbone: %s", ensure_pretrained_backbone(backbone, pretrained, download=not problems))
        except PretrainedBackboneError as err:
            problems.append(str(err))
    elif rank_zero_only.rank == 0 and backbone in PUBLISHED_VARIANTS:
        # A paper backbone without its ImageNet weights departs from every published recipe.
        log.warning("backbone: %s from scratch (model.net.pretrained_backbone is false); every published DEKR "
                    "number starts from the ImageNet HRNet", backbone)
    else:
        # A smaller variant from scratch is a quick-experiment recipe (the demo's): no published number to miss.
        _say("backbone: %s from scratch (model.net.pretrained_backbone is false)", backbone)
    if problems:
        raise PreflightError(problems)


__all__ = ["DevicePlan", "PreflightError", "check_file_option", "check_new_run_folder", "check_output_file",
           "check_resume_file", "check_run_folder", "check_training_run", "continues_a_run",
           "datamodule_from_config", "earlier_run", "last_checkpoint", "one_of_many_processes",
           "plan_devices", "run_folder_for", "visible_gpus"]
