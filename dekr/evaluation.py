"""Evaluation from Python: ``dekr.evaluate(model, data=...)`` -> OKS-AP figures and COCO results.

The same path as ``scripts/evaluate.py`` (which only parses arguments and prints): a Lightning
``Trainer.validate`` / ``test`` over the datamodule, on any number of devices (the OKS-AP metric
gathers and de-duplicates every rank's predictions), with the model's decode options, overridable.

    import dekr
    figures = dekr.evaluate("pose_dekr_hrnetw32_coco.pth", data="w32_coco.yaml", data_root="/data/coco")
    figures.stats["AP"], figures.results[:2]
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from dekr.callbacks.stop_signal import sigint_as_sigterm
from dekr.data.datamodule import DEKRDataModule
from dekr.inference import DecodeConfig, to_coco_results
from dekr.inference.config import merge_decode_options
from dekr.module import DEKRModule


class CollectPredictions(Callback):
    """Keeps the decoded poses of every evaluation batch (all ranks gathered at the end)."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.image_ids: list[int] = []

    def _collect(self, outputs: Any, spec: Any) -> None:
        if not outputs:
            return
        ids = [o["image_id"] for o in outputs]
        self.image_ids.extend(ids)
        self.results.extend(to_coco_results(outputs, ids, spec.pooled_category_id))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect(outputs, pl_module.spec)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect(outputs, pl_module.spec)

    def gather(self, trainer: Trainer) -> list[dict[str, Any]]:
        parts = [(self.image_ids, self.results)]
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            parts = [None] * trainer.world_size  # type: ignore[list-item]
            torch.distributed.all_gather_object(parts, (self.image_ids, self.results))
        seen: set[int] = set()
        merged: list[dict[str, Any]] = []
        for ids, results in parts:  # type: ignore[misc]
            fresh = set(ids) - seen  # DistributedSampler padding repeats images: keep them once
            merged.extend(r for r in results if r["image_id"] in fresh)
            seen |= fresh
        return merged


@dataclass
class Evaluation:
    """What :func:`evaluate` measured.

    Attributes:
        stats: OKS-AP figures without the split prefix (``AP``, ``AP50``, ..., CrowdPose ``AP_easy``...),
            fractions (AP 0.680 is the paper's 68.0), -1 where COCOeval cannot define one.
        results: COCO-format keypoint results (every rank's, de-duplicated).
        decode: the decoding options used.
        is_global_zero: False on the other ranks of a distributed run (their ``results`` are complete too).
    """

    stats: dict[str, float]
    results: list[dict[str, Any]] = field(default_factory=list)
    decode: DecodeConfig | None = None
    is_global_zero: bool = True


class EvaluationStopped(Exception):
    """SIGTERM or Ctrl-C stopped an evaluation: no AP (the split is unfinished), the poses decoded so far
    (``results``, of ``images`` images on this rank) and the signal's name."""

    def __init__(self, signal_name: str, results: list[dict[str, Any]], images: int) -> None:
        super().__init__(f"stopped by {signal_name} after {images} images (no AP: the split was not finished)")
        self.signal_name, self.results, self.images = signal_name, results, images


def _datamodule(data: DEKRDataModule | str | Path | dict[str, Any], data_root: str | None,
                overrides: dict[str, Any]) -> DEKRDataModule:
    """A datamodule from an instance, a run config (its ``data`` section) or a dict of its arguments."""
    if isinstance(data, DEKRDataModule):
        return data
    if isinstance(data, (str, Path)):
        from dekr.config import load_section, resolve_config_path
        from dekr.preflight import datamodule_from_config

        section = load_section(resolve_config_path(str(data)), "data")
        section = section if "class_path" in section else {"class_path": f"{DEKRDataModule.__module__}."
                                                          f"{DEKRDataModule.__name__}", "init_args": section}
        args = dict(section.get("init_args") or {})
    else:
        section, args = None, dict(data)
    if data_root:
        args["root"] = data_root
    args.update(overrides)
    if section is not None:
        datamodule = datamodule_from_config({**section, "init_args": args})
        if datamodule is None:
            raise TypeError(f"{data}: its data class {section['class_path']} is not a DEKRDataModule")
        return datamodule
    return DEKRDataModule(**args)


def evaluate(model: DEKRModule | str | Path, data: DEKRDataModule | str | Path | dict[str, Any], *,
             split: str = "val", data_root: str | None = None, decode: dict[str, Any] | None = None,
             batch_size: int | None = None, num_workers: int | None = None, accelerator: str = "auto",
             devices: int | str = "auto", precision: str = "32-true", limit: float | None = None,
             metric_backend: str | None = None, spec: str | None = None, annotations: str | None = None,
             images: str | None = None) -> Evaluation:
    """OKS-AP of a model on a dataset split.

    Args:
        model: a :class:`DEKRModule`, or any checkpoint :func:`dekr.checkpoint.load_checkpoint` reads
            (ours, official, MMPose, SuperGradients, a zoo name; its rescoring net is used).
        data: a :class:`DEKRDataModule`, a run config (``w32_coco.yaml``: its ``data`` section) or
            the datamodule's arguments as a dict.
        split: ``val`` or ``test``.
        data_root: overrides the data's ``root``.
        decode: :class:`DecodeConfig` fields over the model's (``flip_test``, ``scales``, ``rescore``,
            ``input_size``, ...), for this evaluation only; the order of the layers:
            :mod:`dekr.inference.config`.
        batch_size, num_workers: evaluation loader settings.
        accelerator, devices, precision, limit: the Trainer's (``limit``: batches per rank, smoke tests).
        metric_backend: ``faster_coco_eval`` or ``pycocotools`` (same numbers).
        spec: the keypoint spec a foreign checkpoint must have (by default from the checkpoint).
        annotations, images: the split's annotation json and image folder (relative to the root or
            absolute), instead of the dataset's layout.
    """
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    overrides: dict[str, Any] = {}
    if batch_size:
        overrides["val_batch_size"] = batch_size
    if num_workers is not None:
        overrides["num_workers"] = num_workers
        if num_workers == 0:
            overrides["persistent_workers"] = False
    if annotations or images:
        overrides[f"{split}_split"] = {"annotations": annotations, "images": images}
    datamodule = _datamodule(data, data_root, overrides)
    if not isinstance(model, DEKRModule):
        model = DEKRModule.from_checkpoint(str(model), spec=spec)
    model_decode = model.decode_options
    # Checked before any data is read; the caller's module gets its own options back afterwards.
    model.decode_options = merge_decode_options(("the model's decode options", model_decode),
                                                ("evaluate(decode=...)", decode))
    if metric_backend:
        model.metric_backend = metric_backend
    collector = CollectPredictions()
    trainer = Trainer(accelerator=accelerator, devices=devices, precision=precision, logger=False,
                      callbacks=[collector], enable_checkpointing=False, enable_model_summary=False,
                      enable_progress_bar=False, limit_val_batches=limit, limit_test_batches=limit)
    try:
        # The figures the module logs (``val/AP``, ...) come back from validate / test.
        with sigint_as_sigterm() as received:
            if split == "val":
                logged = trainer.validate(model, datamodule=datamodule, verbose=False)
            else:
                logged = trainer.test(model, datamodule=datamodule, verbose=False)
        used = model.decode_config()
    except SIGTERMException:  # Lightning's exit on SIGTERM (status 0): not a finished evaluation
        raise EvaluationStopped(signal.Signals(received[0]).name, collector.results,
                                len(collector.image_ids)) from None
    finally:
        model.decode_options = model_decode
    metrics = logged[0] if logged else {}
    stats = {k.split("/", 1)[1]: float(v) for k, v in metrics.items()
             if k.startswith(f"{split}/") and k.split("/", 1)[1] != "num_images"}
    return Evaluation(stats, collector.gather(trainer), used, trainer.is_global_zero)


__all__ = ["CollectPredictions", "Evaluation", "EvaluationStopped", "evaluate"]
