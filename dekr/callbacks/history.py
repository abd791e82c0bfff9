"""Per-epoch scalar metrics, kept for ``metrics.json`` (learning curves without a logger)."""
from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class EpochHistory(Callback):
    """Records the scalar ``trainer.callback_metrics`` (epoch aggregates, last validation) at the
    end of every training epoch; ``history`` is a list of dicts with ``epoch`` and ``step``."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key, value in trainer.callback_metrics.items():
            if getattr(value, "numel", lambda: 1)() == 1:
                row[key] = float(value)
        self.history.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
