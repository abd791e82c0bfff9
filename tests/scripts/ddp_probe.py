"""A test callback: records, per rank, the image ids trained and validated on, the training batch sizes and
the metric seen."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback


class RecordImageIds(Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.train_ids: list[int] = []
        self.train_batch_sizes: list[int] = []
        self.val_ids: list[int] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self.train_ids += [int(i) for i in batch["image_id"]]
        self.train_batch_sizes.append(len(batch["image_id"]))

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self.val_ids += [int(i) for i in batch["image_id"]]

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps({
            "global_rank": trainer.global_rank, "world_size": trainer.world_size, "node_rank": trainer.node_rank,
            "train_ids": self.train_ids, "train_batch_sizes": self.train_batch_sizes, "val_ids": self.val_ids,
            "metrics": metrics,
            "backend": str(trainer.strategy.process_group_backend) if hasattr(trainer.strategy,
                                                                            "process_group_backend") else None,
        }))
