"""What a training says as it goes, for a reader of its log: one INFO line per validation (the
monitored metric, the best so far and its epoch, the other validation metrics), a summary when the fit
ends (best score and epoch, the checkpoints, the metrics file, the learning curve), and the learning
curve image in the run folder. The figures are fractions, as in ``metrics.json`` (AP 0.680, the
paper's 68.0); epochs count from 0, as in Lightning's progress bar, the checkpoint names and
``metrics.json``.

The per-epoch records are :class:`~dekr.callbacks.EpochHistory`'s (its ``history`` and ``metrics.json``):
the report adds no record of its own beyond the validations of the current epoch.
"""
from __future__ import annotations

import io
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from tqdm import tqdm

from dekr.callbacks.checkpoint_io import LastAndBestCheckpoint
from dekr.callbacks.history import EpochHistory
from dekr.file_publish import atomic_write_bytes

log = logging.getLogger(__name__)

#: The training loss drawn beside the validation metric: the first of these a run's history has.
LOSS_KEYS = ("train/epoch_loss", "train/loss")


def format_metric(name: str, value: float) -> str:
    """One figure of the log: an AP or AR (a fraction) with 3 decimals, ``n/a`` where COCOeval reports
    -1 (no ground truth in the area range); a count (``num_*``) whole; anything else to 4 digits."""
    short = name.rsplit("/", 1)[-1]
    if short.startswith(("AP", "AR")):
        return f"{value:.3f}" if value >= 0 else "n/a"  # (NaN is not >= 0)
    if short.startswith("num_"):
        return f"{value:.0f}"
    return f"{value:.4g}"


def best_of(scores: list[tuple[int, float]], mode: str = "max") -> tuple[int, float] | None:
    """The best ``(epoch, score)`` of ``scores`` (``max`` or ``min``), the earliest of equal ones (as the
    checkpoint callback, which saves only a strictly better score); NaNs ignored; None if there is none."""
    best = None
    for epoch, score in scores:
        if math.isnan(score):
            continue
        if best is None or (score > best[1] if mode == "max" else score < best[1]):
            best = (epoch, score)
    return best


def validation_line(epoch: int, metrics: dict[str, float], monitor: str,
                    best: tuple[int, float] | None) -> str:
    """The log line of one validation, e.g. ``epoch 12: val/AP 0.881 (best 0.881 at epoch 12) | AP50
    0.990 AP75 0.950 APM 0.870 APL n/a AR 0.900 ... num_images 64``: ``monitor`` first with the best
    so far (this validation included), then the other ``metrics`` without their common prefix."""
    head = f"epoch {epoch}:"
    if monitor in metrics:
        head += f" {monitor} {format_metric(monitor, metrics[monitor])}"
        if best is not None:
            head += f" (best {format_metric(monitor, best[1])} at epoch {best[0]})"
    others = " ".join(f"{name.split('/', 1)[-1]} {format_metric(name, value)}"
                      for name, value in metrics.items() if name != monitor)
    return f"{head} | {others}" if others else head


def draw_learning_curve(history: list[dict[str, Any]], monitor: str, mode: str, title: str) -> bytes | None:
    """A PNG of ``monitor`` at each validated epoch of ``history`` (EpochHistory rows), the best marked,
    and beside it the training loss per epoch (log scale) when the rows have one; None when no row has
    ``monitor``. Drawn on a bare matplotlib ``Figure`` (the Agg renderer: no display, no pyplot state)."""
    scores = [(int(row["epoch"]), float(row[monitor])) for row in history if monitor in row]
    if not scores:
        return None
    from matplotlib.figure import Figure  # (imported at the first drawing: a second or so)
    from matplotlib.ticker import MaxNLocator

    loss_key = next((key for key in LOSS_KEYS if any(key in row for row in history)), None)
    losses = [(int(row["epoch"]), float(row[loss_key])) for row in history if loss_key and loss_key in row]
    figure = Figure(figsize=(9.0, 3.4) if losses else (5.0, 3.4), dpi=100)
    axes = figure.subplots(1, 2 if losses else 1, squeeze=False)[0]
    undefined = monitor.rsplit("/", 1)[-1].startswith(("AP", "AR"))  # COCOeval's -1: no point to draw
    shown = [(e, s) for e, s in scores if s >= 0 or not undefined]
    axes[0].plot([e for e, _ in shown], [s for _, s in shown], marker=".", color="tab:red")
    best = best_of(shown, mode)
    if best is not None:
        axes[0].plot([best[0]], [best[1]], marker="*", markersize=12, color="tab:red", linestyle="none",
                     label=f"best {format_metric(monitor, best[1])} (epoch {best[0]})")
        axes[0].legend(loc="lower right" if mode == "max" else "upper right", fontsize=8)
    if all(0.0 <= s <= 1.0 for _, s in shown):  # a fraction (OKS-AP): on its whole range
        axes[0].set_ylim(0.0, 1.0)
    axes[0].set(title=f"{monitor} at each validation", xlabel="epoch", ylabel=monitor)
    if losses:
        values = [v for _, v in losses]
        axes[1].plot([e for e, _ in losses], values, marker=".", color="tab:blue")
        if min(values) > 0 and max(values) > 10 * min(values):
            axes[1].set_yscale("log")  # a loss that falls by orders of magnitude
        axes[1].set(title=f"{loss_key} per epoch", xlabel="epoch", ylabel=loss_key)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def shown_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory when it is inside it (``runs/demo/...``), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class ValidationReport(Callback):
    """One INFO line per validation of a fit, a summary when it ends and the learning curve image,
    all from rank zero (logger ``dekr.callbacks.validation_report``; ``scripts/train.py`` shows INFO,
    in Python ``logging.basicConfig(level=logging.INFO)`` does). The monitored metric and its mode are
    the checkpoint callback's (``val/AP``, ``max`` without one); the per-epoch values come from the
    trainer's :class:`EpochHistory`, which must be among the callbacks before this one.

    Args:
        curve_file: the learning curve image (PNG) in the run folder, written when the fit ends or
            stops and, during it, after a validated epoch at most every ``curve_every_minutes``;
            ``None``: no image.
        curve_every_minutes: how often the image is refreshed during the fit; ``None``: at its end only.
    """

    def __init__(self, curve_file: str | None = "curve.png",
                 curve_every_minutes: float | None = 10.0) -> None:
        self.curve_file = curve_file
        self.curve_every_minutes = curve_every_minutes
        self.curve_path: Path | None = None  # the image, once written
        self._this_epoch: list[tuple[int, float]] = []  # validations of this epoch (val_check_interval < 1)
        self._curve_time = time.monotonic()

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._this_epoch = []
        self._curve_time = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or not trainer.is_global_zero:
            return
        history = _history(trainer)
        prefix = history.validation_prefix if history is not None else "val/"
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()
                   if key.startswith(prefix) and getattr(value, "numel", lambda: 1)() == 1}
        if not metrics:
            return
        monitor, mode = _monitor(trainer)
        best = None
        if monitor in metrics:
            current = (trainer.current_epoch, metrics[monitor])
            earlier = history.series(monitor) if history is not None else []
            best = best_of([*earlier, *self._this_epoch, current], mode)
            self._this_epoch.append(current)
        _say(validation_line(trainer.current_epoch, metrics, monitor, best))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._this_epoch = []  # EpochHistory records the epoch's (last) validation
        if self.curve_every_minutes is None or not trainer.is_global_zero:
            return
        if time.monotonic() - self._curve_time >= 60 * self.curve_every_minutes:
            self._write_curve(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._write_curve(trainer)
        _say(self.summary(trainer))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if trainer.is_global_zero:
            self._write_curve(trainer)  # a stopped run's curve so far (the run's error is reported apart)

    # ------------------------------------------------------------------ outputs
    def summary(self, trainer: L.Trainer) -> str:
        """The end-of-fit summary: epochs, the best and last value of the monitored metric, and where
        the run's files are (best and last checkpoint, metrics file, learning curve)."""
        monitor, mode = _monitor(trainer)
        history = _history(trainer)
        scores = history.series(monitor) if history is not None else []
        best = best_of(scores, mode)
        epochs = trainer.current_epoch
        if best is None:
            head = f"training finished after {epochs} epoch(s), without a {monitor}"
        else:
            last = scores[-1]
            head = (f"training finished after {epochs} epoch(s): best {monitor} "
                    f"{format_metric(monitor, best[1])} at epoch {best[0]}, "
                    f"last {format_metric(monitor, last[1])} at epoch {last[0]}")
        files = {"best checkpoint": _best_checkpoint(trainer), "last checkpoint": _last_checkpoint(trainer),
                 "metrics": history.written if history is not None else None,
                 "learning curve": self.curve_path}
        width = max(len(name) for name in files)
        lines = [f"  {name:<{width}}  {shown_path(path)}" for name, path in files.items() if path]
        return "\n".join([head, *lines])

    def _write_curve(self, trainer: L.Trainer) -> None:
        self._curve_time = time.monotonic()
        history = _history(trainer)
        if self.curve_file is None or history is None:
            return
        monitor, mode = _monitor(trainer)
        path = Path(trainer.default_root_dir) / self.curve_file
        try:
            png = draw_learning_curve(history.history, monitor, mode,
                                      title=shown_path(trainer.default_root_dir))
            if png is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.curve_path = atomic_write_bytes(path, png)
        except (OSError, RuntimeError, ValueError) as err:  # a full disk or a plotting failure: not the run's
            log.warning("could not write the learning curve %s: %s", path, err)


def _say(message: str) -> None:
    # progress bars on screen are cleared while the record is written and drawn again below it: the
    # line stands above the bar instead of being glued to its end
    with tqdm.external_write_mode(file=sys.stderr):
        log.info(message)


def _history(trainer: L.Trainer) -> EpochHistory | None:
    return next((c for c in trainer.callbacks if isinstance(c, EpochHistory)), None)


def _monitor(trainer: L.Trainer) -> tuple[str, str]:
    checkpoint = trainer.checkpoint_callback
    if isinstance(checkpoint, ModelCheckpoint) and checkpoint.monitor:
        return checkpoint.monitor, checkpoint.mode
    return "val/AP", "max"


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    """The stable name of the best checkpoint when there is one (``best.ckpt``), else its own name."""
    checkpoint = trainer.checkpoint_callback
    alias = checkpoint.best_alias_path if isinstance(checkpoint, LastAndBestCheckpoint) else None
    if alias and os.path.isfile(alias):
        return alias
    best = getattr(checkpoint, "best_model_path", None)
    return best if best and os.path.isfile(best) else None


def _last_checkpoint(trainer: L.Trainer) -> str | None:
    last = getattr(trainer.checkpoint_callback, "last_model_path", None)
    return last if last and os.path.isfile(last) else None
