"""The library messages that carry nothing for a user of this project, each silenced by name here.

Our own warnings are fixed where they arise; this is only for what Lightning, torch and W&B print
about themselves. Each :class:`Silence` names the library, the message (a regular expression
matched at its start, narrow enough that the library's other messages and a user's own warnings
still show), why it carries nothing for our users, and an example of the text as the library
prints it (the tests check the pattern against it). :func:`silence_library_noise`, called first in
every script's ``main``, installs them: a ``warnings`` filter for a Python warning, a
``logging.Filter`` on the library's logger for a log record.

The library (``dekr``) never calls it: importing our package leaves a user's warning filters and
loggers as they are.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["LIBRARY_NOISE", "Silence", "silence_library_noise"]


def _always(environ: Mapping[str, str]) -> bool:
    return True


def _outside_slurm_job(environ: Mapping[str, str]) -> bool:
    return "SLURM_JOB_ID" not in environ


@dataclass(frozen=True)
class Silence:
    """One library message that carries nothing for our users.

    Attributes:
        library: the package that prints it.
        message: regular expression matched at the start of the message (case-insensitive for a
            Python warning, as ``warnings.filterwarnings`` matches).
        why: why it carries nothing for a user of this project.
        example: the message as the library prints it.
        category: for a Python warning: its class or a base of it (``UserWarning`` matches
            Lightning's ``PossibleUserWarning``); None for a log record.
        module: for a Python warning: the module it is attributed to (its warning line's module);
            "" for any.
        logger: for a log record: the name of the library's logger that emits it.
        applies: whether the message carries nothing in this environment (``os.environ``).
    """

    library: str
    message: str
    why: str
    example: str
    category: type[Warning] | None = None
    module: str = ""
    logger: str | None = None
    applies: Callable[[Mapping[str, str]], bool] = _always

    def matches(self, text: str) -> bool:
        """Whether a message with this text is the one silenced (its module and logger aside)."""
        flags = re.IGNORECASE if self.category is not None else 0
        return re.match(self.message, text, flags) is not None


# Lightning's rank_zero_info / rank_zero_warn log through this logger (lightning_utilities' rank-zero
# helpers, pointed at it when lightning.pytorch is imported).
_LIGHTNING_RANK_ZERO = "lightning.pytorch.utilities.rank_zero"

#: Every library message silenced in our scripts.
LIBRARY_NOISE: tuple[Silence, ...] = (
    Silence(
        library="lightning",
        message=r"The `srun` command is available on your system but is not used",
        why="outside a SLURM job (a login node, a workstation with SLURM installed) there is nothing to "
            "prepend srun to; our SLURM route, scripts/slurm/*.sbatch, starts every task with srun. "
            "Inside a job (SLURM_JOB_ID set) the hint stays: there a missing srun makes a multi-GPU run hang",
        example="The `srun` command is available on your system but is not used. HINT: If your intention is "
                "to run Lightning on SLURM, prepend your python command with `srun` like so: srun python "
                "scripts/train.py --config demo.yaml ...",
        category=UserWarning,  # lightning.fabric.utilities.warnings.PossibleUserWarning
        module="lightning.fabric.plugins.environments.slurm",
        applies=_outside_slurm_job,
    ),
    Silence(
        library="lightning",
        message=r"💡 Tip: For seamless cloud logging and experiment tracking, try installing \[litlogger\]",
        why="an advertisement for Lightning's hosted logger; our runs log to W&B and metrics.json",
        example="💡 Tip: For seamless cloud logging and experiment tracking, try installing "
                "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger, which logs metrics "
                "and artifacts automatically to the Lightning Experiments platform.",
        logger=_LIGHTNING_RANK_ZERO,
    ),
    Silence(
        library="lightning",
        message=r"💡 Tip: For seamless cloud uploads and versioning, try installing \[litmodels\]",
        why="an advertisement for Lightning's model registry; our checkpoints are files in the run folder",
        example="💡 Tip: For seamless cloud uploads and versioning, try installing "
                "[litmodels](https://pypi.org/project/litmodels/) to enable LitModelCheckpoint, which syncs "
                "automatically with the Lightning model registry.",
        logger=_LIGHTNING_RANK_ZERO,
    ),
    Silence(
        library="lightning (torch)",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        why="Lightning's own use of a torch API in its combined data loader: nothing a user or we call, "
            "and nothing either can change",
        example="`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
                "treespec.is_leaf()` instead.",
        category=FutureWarning,
        module="lightning.pytorch.utilities._pytree",
    ),
    Silence(
        library="lightning",
        # Only our OKS-AP figures (dekr.module.DEKRModule._log_metric): a user's own epoch-level
        # metrics keep the advice.
        message=r"It is recommended to use `self\.log\('(val|test)/(A[PR]\w*|num_images)', \.\.\., "
                r"sync_dist=True\)` when logging on epoch level in distributed setting",
        why="the OKS-AP figures are computed from the predictions gathered over all ranks, so every rank "
            "logs the same value: averaging them across ranks (sync_dist) does not apply",
        example="It is recommended to use `self.log('val/AP', ..., sync_dist=True)` when logging on epoch "
                "level in distributed setting to accumulate the metric across devices.",
        category=UserWarning,  # PossibleUserWarning; its module varies with Lightning's stack depth
    ),
)


class _DropMessages(logging.Filter):
    """Drops the records of one logger whose message a :class:`Silence` names."""

    def __init__(self, silences: list[Silence]) -> None:
        super().__init__()
        self.silences = silences

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(silence.matches(text) for silence in self.silences)


def silence_library_noise(environ: Mapping[str, str] | None = None) -> list[Silence]:
    """Install the :data:`LIBRARY_NOISE` entries that apply in ``environ`` (default ``os.environ``);
    returns them. Calling it again replaces the filters it installed, it does not add more."""
    environ = os.environ if environ is None else environ
    active = [silence for silence in LIBRARY_NOISE if silence.applies(environ)]
    for silence in active:
        if silence.category is not None:
            module = re.escape(silence.module) + r"\Z" if silence.module else ""
            warnings.filterwarnings("ignore", message=silence.message, category=silence.category, module=module)
    loggers = {silence.logger for silence in LIBRARY_NOISE if silence.logger is not None}
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _DropMessages)]:
            logger.removeFilter(old)
        logger.addFilter(_DropMessages([silence for silence in active if silence.logger == name]))
    return active
