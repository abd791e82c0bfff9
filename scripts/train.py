#!/usr/bin/env python3
"""Train DEKR: one GPU, many GPUs, many nodes (SLURM), CPU.

    python scripts/train.py --config demo.yaml                      # the laptop demo (synthetic data)
    python scripts/train.py --config w32_coco.yaml --data.init_args.root /data/coco --trainer.devices 4
    python scripts/train.py --config w32_coco.yaml --ckpt_path last  # resume the run in trainer.default_root_dir
    python scripts/train.py --config w32_coco.yaml --ckpt_path last --resume_if_present true  # or start
    python scripts/train.py --config demo.yaml --print_config        # the resolved config

A LightningCLI: ``--config NAME.yaml`` is looked up in ``configs/`` when it is not a path, and
the configs it names in ``parts`` are applied before it (several ``--config``, see
:mod:`dekr.config`); any field can be overridden (``--model.optim.lr 5e-4``, ``--trainer.precision
bf16-mixed``, ``--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging``). Each run lives
in ``trainer.default_root_dir`` (default ``runs/<config name>``), never in a folder that holds another:
a new run (no ``--ckpt_path``) into a used folder from a config or the default goes to ``<folder>-2``,
``-3``, ... (said in its first log line); into a used folder the command line names, it is refused
(:func:`dekr.preflight.run_folder_for`). The folder holds ``config.yaml`` (the resolved config, with the
folder) and what :func:`dekr.training.trainer_kwargs` sets up for Python runs too: checkpoints (``last``,
``best-*`` by ``val/AP`` and its stable name ``best``, written atomically), a log line per validation and
a summary at the end, ``curve.png``, ``metrics.json``, ``provenance.json`` (the
command, git commit and uncommitted diff in ``git.diff``, packages, machine, SLURM job, each session
of the run: :class:`dekr.callbacks.Provenance`) and the W&B run. The W&B run is named by its config and
run folder (``demo · runs/demo``), or for a sweep point (``--sweep``, set by ``scripts/sweep.py``) by its
swept values and seed, grouped by sweep and tagged (``--trainer.logger.init_args.name/group/tags``
win); its config is this whole config, its summary the best and last value of ``checkpoint.monitor``.

Exit status: 0 when the training finished, 2 for a user error (one line on stderr), 1 for a NaN loss,
128 + the signal number when SIGTERM or Ctrl-C stopped it (after writing ``last.ckpt``).
"""
from __future__ import annotations

import logging
import signal
import sys
from argparse import ArgumentError
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# First, before torch loads: dekr's import sets OpenMP's passive waiting, then the thread count is chosen.
from dekr.cpu_threads import apply_thread_policy  # noqa: E402

apply_thread_policy()

from lightning.pytorch import Trainer  # noqa: E402
from lightning.pytorch.accelerators import CPUAccelerator  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402
from lightning.pytorch.utilities import rank_zero_only  # noqa: E402
from lightning.pytorch.utilities.exceptions import SIGTERMException  # noqa: E402

from dekr.callbacks import (CheckpointOnStop, EpochHistory, ImagesPerSecond, LastAndBestCheckpoint,  # noqa: E402
                            PoseImageLogger, Provenance, ValidationReport)
from dekr.checkpoint import CheckpointWriteError  # noqa: E402
from dekr.config import PARTS_KEY, config_stack  # noqa: E402
from dekr.config_errors import USAGE_ERROR, USER_ERRORS, explain_config_error, report_user_error  # noqa: E402
from dekr.data.datamodule import DEKRDataModule  # noqa: E402
from dekr.library_warnings import silence_library_noise  # noqa: E402
from dekr.loggers import describe_wandb_runs, explicit_identity  # noqa: E402
from dekr.module import DEKRModule  # noqa: E402
from dekr.preflight import (PreflightError, check_output_file, check_training_run,  # noqa: E402
                            last_checkpoint, run_folder_for)
from dekr.run_lock import RunFolderBusy, hold_run_folder  # noqa: E402
from dekr.training import CHECKPOINT_DEFAULTS, trainer_kwargs  # noqa: E402

log = logging.getLogger("dekr.train")

# The run's own callbacks, each a config section (``--checkpoint.monitor``, ``--pose_images.num_images``).
RUN_CALLBACKS = {"checkpoint": LastAndBestCheckpoint, "pose_images": PoseImageLogger,
                 "throughput": ImagesPerSecond, "history": EpochHistory,
                 "validation_report": ValidationReport}

ROOT_DIR_OPTION = "--trainer.default_root_dir"


def names_run_folder(command: list[str]) -> bool:
    """Whether the command line itself names the run folder (``--trainer.default_root_dir``), rather
    than a config file or the default ``runs/<config name>``."""
    return any(arg == ROOT_DIR_OPTION or arg.startswith(ROOT_DIR_OPTION + "=") for arg in command)


def resolve_config_args(argv: list[str]) -> tuple[list[str], str | None]:
    """Replace each ``--config NAME`` by the files it is stacked from (its ``parts``, then itself),
    bare names looked up in ``configs/``; also return the first config's stem (the default run name)."""
    out: list[str] = []
    name = None
    args = iter(argv)
    for arg in args:
        value = None
        if arg in ("--config", "-c"):
            value = next(args, None)
            if value is None:
                out.append(arg)
                break
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        else:
            out.append(arg)
            continue
        if value.lstrip().startswith(("{", "[")) or "\n" in value:  # a config given as a YAML string
            out += ["--config", value]
            continue
        stack = config_stack(value)
        name = name or stack[-1].stem
        for path in stack:
            out += ["--config", str(path)]
    return out, name


class DEKRCLI(LightningCLI):
    """LightningCLI that builds the trainer with :func:`dekr.training.trainer_kwargs` in the run folder."""

    run_name: str | None = None
    command: list[str] | None = None  # sys.argv as given, before resolve_config_args

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                            help="resume: 'last' (the run's last.ckpt), 'best', or a checkpoint path")
        parser.add_argument("--resume_if_present", type=bool, default=False,
                            help="with --ckpt_path last: start a new run when the run folder has no checkpoint "
                                 "yet (instead of refusing): for job scripts that may run first or again")
        parser.add_argument("--test_after_fit", type=bool, default=False,
                            help="evaluate the best checkpoint on the test split after training")
        parser.add_argument("--sweep", type=Optional[dict], default=None,
                            help="set by scripts/sweep.py: the campaign point this run is (name, point, "
                                 "seed, parameters); names, groups and tags the W&B run")
        parser.add_argument(f"--{PARTS_KEY}", type=Optional[list[str]], default=None,
                            help="(in a config file) the configs it is stacked on, which scripts/train.py "
                                 "applies before it; a name resolves next to that config, then in configs/")
        for key, callback in RUN_CALLBACKS.items():
            # Plain class groups: LightningCLI would append callback groups after trainer_kwargs' list,
            # i.e. after RequeueAtSafePoint, which must come last.
            parser.add_class_arguments(callback, key, fail_untyped=False, sub_configs=True)
        parser.set_defaults({f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()})

    def before_instantiate_classes(self) -> None:
        self.choose_run_folder()
        # Here, in the launching process, before the model loads weights, the loggers start or any
        # DDP process spawns: a run that cannot start fails once, with every cause in one message.
        check_training_run(self.config.as_dict(), self.run_folder())
        self.config[PARTS_KEY] = None  # applied already: the saved config.yaml is complete without them

    def choose_run_folder(self) -> None:
        """Set ``trainer.default_root_dir`` to the folder this run goes into and say which, once
        (:func:`dekr.preflight.run_folder_for`: a new run never goes into a folder that holds another;
        the configured one or ``runs/<config name>`` gets a numbered neighbour)."""
        configured = self.config.get("trainer.default_root_dir")
        wanted = Path(configured) if configured else Path("runs") / (self.run_name or "default")
        named = names_run_folder(self.command or sys.argv)
        folder = run_folder_for(wanted, self.config.as_dict(), named=named)
        self.config["trainer.default_root_dir"] = str(folder)  # config.yaml then names it too
        if folder != wanted:
            # Lightning's DDP workers run this command again: they must find this folder, not choose one
            sys.argv += [ROOT_DIR_OPTION, str(folder)]
        if rank_zero_only.rank == 0:
            why = "" if folder == wanted else \
                f" ({wanted} holds an earlier run; {ROOT_DIR_OPTION} {wanted} --ckpt_path last resumes it)"
            log.info("run folder: %s%s", folder, why)

    def run_folder(self) -> Path:
        return Path(self.config["trainer.default_root_dir"])

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        callbacks = config.get("callbacks") or []
        callbacks = [*(callbacks if isinstance(callbacks, list) else [callbacks]),
                     *(self._get(self.config_init, key) for key in RUN_CALLBACKS)]
        if not any(isinstance(c, Provenance) for c in callbacks):
            callbacks.append(Provenance(command=self.command))  # the command as typed, not as expanded
        describe_wandb_runs(config.get("logger"), config_name=self.run_name, run_folder=self.run_folder(),
                            sweep=self.config.get("sweep"), seed=self.config.get("seed_everything"),
                            explicit=explicit_identity(self.command or sys.argv),
                            config=self.config.as_dict())
        run = trainer_kwargs(self.run_folder(), callbacks, logger=config.get("logger"),
                             plugins=config.get("plugins"))
        trainer = super().instantiate_trainer(**{**kwargs, **run})
        check_sync_batchnorm(trainer)
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


def main(argv: list[str] | None = None) -> int:
    silence_library_noise()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    DEKRCLI.command = [sys.argv[0], *argv]
    try:
        argv, run_name = resolve_config_args(argv)
    except USER_ERRORS as err:  # a config or part that is not there, a loop of parts
        return report_user_error(err)
    DEKRCLI.run_name = run_name
    sys.argv = [sys.argv[0], *argv]  # (LightningCLI warns when given args besides a command line)
    try:
        cli = DEKRCLI(
            DEKRModule,
            DEKRDataModule,
            subclass_mode_data=True,
            run=False,
            seed_everything_default=42,
            trainer_defaults={"logger": {"class_path": "dekr.loggers.WandbLogger"}},
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": __doc__, "exit_on_error": False,
                           "allow_abbrev": False},  # --trainer.max_epoch is a typo, not max_epochs
            auto_configure_optimizers=False,
        )
    except ArgumentError as err:
        return report_user_error(explain_config_error(err, argv))
    except PreflightError as err:
        # every SLURM task runs this check; one of them reports
        return report_user_error(err) if rank_zero_only.rank == 0 else USAGE_ERROR
    except (*USER_ERRORS, TypeError) as err:  # TypeError: arguments a class refuses when instantiated
        return report_user_error(err)
    ckpt_path = cli.config.get("ckpt_path")
    if ckpt_path == "last" and last_checkpoint(cli.trainer.default_root_dir) is None:
        ckpt_path = None  # --resume_if_present (preflight refused it otherwise)
        log.info("no checkpoint in %s/checkpoints yet: starting a new run", cli.trainer.default_root_dir)
    # Room for a checkpoint (weights and the optimizer's state: about 3x the parameters with Adam),
    # checked before the first epoch rather than found missing at its end.
    needed = 3 * sum(p.numel() * p.element_size() for p in cli.model.parameters()) + 2**20
    problems = check_output_file(Path(cli.trainer.default_root_dir) / "checkpoints" / "last.ckpt",
                                 "the run folder's checkpoint", min_free_bytes=needed)
    if problems and rank_zero_only.rank == 0:
        return report_user_error(problems[0])
    # The launching process holds the run folder (DDP workers and the other SLURM tasks are its own run).
    holding = hold_run_folder(cli.trainer.default_root_dir) if rank_zero_only.rank == 0 else nullcontext()
    try:
        with holding:
            # weights-only on every torch (its default only from torch 2.6): no code runs from a checkpoint
            cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, weights_only=True)
    except RunFolderBusy as err:
        return report_user_error(err)
    except CheckpointWriteError as err:  # a full or read-only disk: one line, not torch's writer internals
        print(f"error: {err}", file=sys.stderr)
        return 1
    except FloatingPointError as err:  # NaN loss: the message names the batch's image ids
        print(f"error: {err}", file=sys.stderr)
        return 1
    except USER_ERRORS as err:  # missing dataset files, incompatible checkpoint, ...
        return report_user_error(err, with_type=True)
    except SIGTERMException:  # Lightning's exit on SIGTERM (and Ctrl-C, CheckpointOnStop): not a success
        stop = next(c for c in cli.trainer.callbacks if isinstance(c, CheckpointOnStop)).stopped
        if stop is None:
            print("error: stopped by SIGTERM", file=sys.stderr)
            return 128 + signal.SIGTERM
        print(f"error: {stop.message()}", file=sys.stderr)
        return stop.exit_code
    if cli.config.get("test_after_fit"):
        cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best")
    return 0


if __name__ == "__main__":
    sys.exit(main())
