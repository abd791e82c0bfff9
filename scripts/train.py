#!/usr/bin/env python3
"""Train DEKR: one GPU, many GPUs, many nodes (SLURM), CPU.

    python scripts/train.py --config demo.yaml                      # the laptop demo (synthetic data)
    python scripts/train.py --config w32_coco.yaml --data.init_args.root /data/coco --trainer.devices 4
    python scripts/train.py --config w32_coco.yaml --ckpt_path last  # resume the run in trainer.default_root_dir
    python scripts/train.py --config demo.yaml --print_config        # the resolved config

A LightningCLI: ``--config NAME.yaml`` is looked up in ``configs/`` when it is not a path; any
field can be overridden (``--model.optim.lr 5e-4``, ``--trainer.precision bf16-mixed``,
``--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging``). Each run lives in
``trainer.default_root_dir`` (default ``runs/<config name>``): ``config.yaml`` (the resolved config),
``checkpoints/last.ckpt`` and ``checkpoints/best-*.ckpt`` (by ``val/AP``, written atomically),
``metrics.json`` (the final and best validation figures) and the W&B run (offline without an API
key or network; ``WANDB_MODE=disabled`` turns it off).
"""
from __future__ import annotations

import json
import logging
import re
import sys
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any, Optional

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning.pytorch import Trainer  # noqa: E402
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import LearningRateMonitor  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402
from lightning.pytorch.plugins.io import CheckpointIO  # noqa: E402
from lightning.pytorch.utilities import rank_zero_only  # noqa: E402

from dekr.callbacks import (AtomicCheckpointIO, EpochHistory, ImagesPerSecond, LastAndBestCheckpoint,  # noqa: E402
                            PoseImageLogger, RequeueAtSafePoint, WandbLogger)
from dekr.config import resolve_config_path  # noqa: E402
from dekr.data.datamodule import DEKRDataModule  # noqa: E402
from dekr.module import DEKRModule  # noqa: E402
from dekr.preflight import PreflightError, check_training_run  # noqa: E402

log = logging.getLogger("dekr.train")


def resolve_config_args(argv: list[str]) -> tuple[list[str], str | None]:
    """Replace bare ``--config NAME`` values by their path under ``configs/``; also return the
    first config's stem (the default run name)."""
    out, name = list(argv), None
    for i, arg in enumerate(out):
        value = None
        if arg in ("--config", "-c") and i + 1 < len(out):
            value, setter = out[i + 1], (lambda v, i=i: out.__setitem__(i + 1, v))
        elif arg.startswith("--config="):
            value, setter = arg.split("=", 1)[1], (lambda v, i=i: out.__setitem__(i, f"--config={v}"))
        if value is not None and not value.lstrip().startswith(("{", "[")) and "\n" not in value:
            path = resolve_config_path(value)
            setter(str(path))
            name = name or path.stem
    return out, name


class DEKRCLI(LightningCLI):
    """LightningCLI with the run layout, atomic checkpoints and the default callbacks of DEKR."""

    run_name: str | None = None

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                            help="resume: 'last' (the run's last.ckpt), 'best', or a checkpoint path")
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="evaluate the best checkpoint on the test split after training")
        parser.add_lightning_class_args(LastAndBestCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/AP", "checkpoint.mode": "max", "checkpoint.save_last": True,
            "checkpoint.save_top_k": 1, "checkpoint.filename": "best-epoch{epoch:03d}-ap{val/AP:.4f}",
            "checkpoint.auto_insert_metric_name": False,
        })
        parser.add_lightning_class_args(PoseImageLogger, "pose_images")
        parser.add_lightning_class_args(ImagesPerSecond, "throughput")
        parser.add_lightning_class_args(EpochHistory, "history")

    def before_instantiate_classes(self) -> None:
        # Here, in the launching process, before the model loads weights, the loggers start or any
        # DDP process spawns: a run that cannot start fails once, with every cause in one message.
        check_training_run(self.config.as_dict(), self.run_folder())

    def run_folder(self) -> Path:
        configured = self.config.get("trainer.default_root_dir")
        return Path(configured) if configured else Path("runs") / (self.run_name or "default")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self._get(self.config_init, "trainer", default={})
        if not config.get("default_root_dir"):
            kwargs["default_root_dir"] = str(Path("runs") / (self.run_name or "default"))
        trainer = super().instantiate_trainer(**kwargs)
        check_sync_batchnorm(trainer)
        root = Path(trainer.default_root_dir)
        # Atomic saves unless a custom CheckpointIO was configured.
        if type(trainer.strategy.checkpoint_io) in (CheckpointIO,) or \
                type(trainer.strategy.checkpoint_io).__name__ == "TorchCheckpointIO":
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        for callback in trainer.checkpoint_callbacks:
            if callback.dirpath is None:  # fixed folder, so that --ckpt_path last finds it again
                callback.dirpath = str(root / "checkpoints")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.save_dir is None:
                logger.set_save_dir(root)
        if trainer.loggers and not any(isinstance(c, LearningRateMonitor) for c in trainer.callbacks):
            trainer.callbacks.insert(0, LearningRateMonitor(logging_interval="epoch"))
        # SLURM requeue signal: checkpoint + requeue at the next safe point of the loop, not inside the
        # signal handler. Last, so that the other callbacks' epoch-end state is in that checkpoint.
        if not any(isinstance(c, RequeueAtSafePoint) for c in trainer.callbacks):
            trainer.callbacks.append(RequeueAtSafePoint())
        return trainer


def check_sync_batchnorm(trainer: Trainer) -> None:
    """Refuse ``trainer.sync_batchnorm`` on a distributed CPU run before anything starts.

    Lightning converts every BatchNorm (the HRNet backbone's and the heads') to ``SyncBatchNorm``
    under DDP; torch's SyncBatchNorm runs only on CUDA / XPU / HPU devices and would otherwise fail
    at the first training batch, after the data loading and the sanity check.
    """
    if getattr(trainer.strategy, "_layer_sync", None) is not None and isinstance(trainer.accelerator, CPUAccelerator):
        raise ValueError("trainer.sync_batchnorm=true needs GPUs: torch's SyncBatchNorm has no CPU implementation; "
                         "leave it false for CPU runs (each process then normalises over its own batch)")


def write_metrics(cli: DEKRCLI) -> Path | None:
    """``metrics.json`` in the run folder: best and final validation figures, checkpoint paths."""
    trainer = cli.trainer
    if not trainer.is_global_zero:
        return None
    checkpoint = trainer.checkpoint_callback
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    out = {
        "best_score": float(checkpoint.best_model_score) if checkpoint and checkpoint.best_model_score is not None
        else None,
        "monitor": checkpoint.monitor if checkpoint else None,
        "best_model_path": checkpoint.best_model_path if checkpoint else None,
        "last_model_path": checkpoint.last_model_path if checkpoint else None,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "final": final,
        "history": next((c.history for c in trainer.callbacks if isinstance(c, EpochHistory)), []),
    }
    path = Path(trainer.default_root_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    return path


def _config_files(argv: list[str]) -> list[Path]:
    files = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            files.append(Path(argv[i + 1]))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
    return [f for f in files if f.is_file()]


def _has_key(data: Any, dotted: str, base: Path) -> bool:
    node = data
    for part in dotted.split("."):
        if isinstance(node, str) and node.endswith((".yaml", ".yml")) and (base / node).is_file():
            node = yaml.safe_load((base / node).read_text())  # a nested-file reference (data: data/x.yaml)
        if isinstance(node, dict) and "init_args" in node and part not in node:
            node = node["init_args"]
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def explain_config_error(message: str, argv: list[str]) -> str:
    """Prefix a jsonargparse error with the config file that holds the offending key."""
    parser_key = re.search(r'Parser key "([^"]+)"', message)
    option = re.search(r"(?:Option|Key) '([^']+)' (?:is not accepted|is not expected)", message)
    if not parser_key:
        return message
    keys = [parser_key[1]]
    if option:
        keys.insert(0, f"{parser_key[1]}.{option[1]}")
    for path in reversed(_config_files(argv)):  # later files override earlier ones
        data = yaml.safe_load(path.read_text()) or {}
        for key in keys:
            if _has_key(data, key, path.parent):
                return f"{path}: key {key!r}: {message}"
    return f"key {keys[0]!r} (command line): {message}"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # The OKS-AP figures are computed from states gathered over all ranks, so every rank logs the
    # same value: Lightning's advice to sync_dist them (average across ranks) does not apply.
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv, run_name = resolve_config_args(argv)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    DEKRCLI.run_name = run_name
    sys.argv = [sys.argv[0], *argv]  # (LightningCLI warns when given args besides a command line)
    try:
        cli = DEKRCLI(
            DEKRModule,
            DEKRDataModule,
            subclass_mode_data=True,
            run=False,
            seed_everything_default=42,
            trainer_defaults={"logger": {"class_path": "dekr.callbacks.WandbLogger"}},
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": __doc__, "exit_on_error": False},
            auto_configure_optimizers=False,
        )
    except ArgumentError as err:
        print(f"error: {explain_config_error(str(err), argv)}", file=sys.stderr)
        return 2
    except PreflightError as err:
        if rank_zero_only.rank == 0:  # every SLURM task runs this check; one of them reports
            print(f"error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ckpt_path = cli.config.get("ckpt_path")
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    except FloatingPointError as err:  # NaN loss: the message names the batch's image ids
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as err:  # missing dataset files, incompatible checkpoint, ...
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    path = write_metrics(cli)
    if path is not None:
        print(f"run folder: {cli.trainer.default_root_dir}  (metrics: {path})")
    if cli.config.get("test_after_fit"):
        cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
    return 0


if __name__ == "__main__":
    sys.exit(main())
