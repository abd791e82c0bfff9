"""Per-epoch scalar metrics and ``metrics.json``: the learning curves and the result of a run,
without a logger."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from dekr.callbacks.run_costs import COST_KEYS, RunCosts
from dekr.file_publish import atomic_write_text

log = logging.getLogger(__name__)


class EpochHistory(Callback):
    """Records the scalar ``trainer.callback_metrics`` at the end of every training epoch;
    ``history`` is a list of dicts with ``epoch`` and ``step``. Validation metrics (names starting
    with ``validation_prefix``) appear only in the rows of the epochs that ran a validation, so
    ``[row["val/AP"] for row in history if "val/AP" in row]`` has one value per validation.

    When ``fit`` ends, or stops on an exception (SIGTERM, Ctrl-C, an error), rank 0 writes
    ``metrics_file`` in the run folder (``trainer.default_root_dir``): ``status`` (``finished``,
    ``stopped`` or ``failed``), ``best_score``, ``monitor``, ``best_model_path`` and ``last_model_path`` of the checkpoint
    callback, ``epochs``, ``global_step``, ``final`` (the last scalar metrics), ``history`` and ``costs``
    (parameters, GFLOPs, throughput, peak memory, wall time: :mod:`dekr.callbacks.run_costs`, measured by
    the trainer's :class:`RunCosts`; all ``None`` without one).

    Args:
        metrics_file: file name in the run folder; ``None`` writes nothing.
        validation_prefix: how the names of the module's validation metrics start.
    """

    def __init__(self, metrics_file: str | None = "metrics.json", validation_prefix: str = "val/") -> None:
        self.metrics_file = metrics_file
        self.validation_prefix = validation_prefix
        self.history: list[dict[str, Any]] = []
        self.written: Path | None = None  # the metrics file, once written
        self._validated = False  # whether a validation ran in this training epoch

    def series(self, key: str) -> list[tuple[int, float]]:
        """``(epoch, value)`` of ``key`` in the recorded epochs that have it, in order: for a validation
        metric, one pair per validated epoch (its last validation's value)."""
        return [(int(row["epoch"]), float(row[key])) for row in self.history if key in row]

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        # callback_metrics keep the last validation's values in every later epoch
        row.update({key: value for key, value in _scalars(trainer).items()
                    if self._validated or not key.startswith(self.validation_prefix)})
        self._validated = False
        self.history.append(row)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, "finished")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # a stopped or failed run keeps its figures so far (a resumed run rewrites the file); a write that
        # fails too (the disk that stopped the run is full) must not hide the run's own error
        try:
            self._write(trainer, "stopped" if isinstance(exception, (SystemExit, KeyboardInterrupt)) else "failed")
        except OSError as err:
            log.warning("could not write %s: %s", self.metrics_file, err)

    def _write(self, trainer: L.Trainer, status: str) -> None:
        if self.metrics_file is None or not trainer.is_global_zero:
            return
        checkpoint = trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_score", None)
        summary = {
            "status": status,
            "best_score": float(best) if best is not None else None,
            "monitor": getattr(checkpoint, "monitor", None),
            "best_model_path": getattr(checkpoint, "best_model_path", None),
            "last_model_path": getattr(checkpoint, "last_model_path", None),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "final": _scalars(trainer),
            "history": self.history,
            "costs": _costs(trainer),
        }
        path = Path(trainer.default_root_dir) / self.metrics_file
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(summary, indent=2))  # a kill mid-write leaves the previous file
        self.written = path

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def _scalars(trainer: L.Trainer) -> dict[str, float]:
    return {key: float(value) for key, value in trainer.callback_metrics.items()
            if getattr(value, "numel", lambda: 1)() == 1}


def _costs(trainer: L.Trainer) -> dict[str, Any]:
    run_costs = next((c for c in trainer.callbacks if isinstance(c, RunCosts)), None)
    return run_costs.costs(trainer) if run_costs is not None else dict.fromkeys(COST_KEYS)
