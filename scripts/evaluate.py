#!/usr/bin/env python3
"""Evaluate a DEKR model: OKS-AP table in the paper's layout + COCO-format results json.

    python scripts/evaluate.py --config w32_coco.yaml --ckpt runs/w32_coco/checkpoints/last.ckpt
    python scripts/evaluate.py --config w32_coco.yaml --ckpt pose_dekr_hrnetw32_coco.pth --scales 2 1 0.5
    python scripts/evaluate.py --config w32_crowdpose.yaml --ckpt pose_dekr_hrnetw32_crowdpose.pth \\
        --rescore final_rescore_crowd_pose_kpt.pth --split test --devices 4

Runs ``Trainer.validate`` (or ``test`` for ``--split test``), so ``--devices N`` evaluates on N GPUs
(DDP; the OKS-AP metric gathers and de-duplicates the predictions of every rank). The decoding
options default to the official test values for the dataset; ``--flip/--no-flip``, ``--scales``,
``--rescore``, ``--decode key=value`` override them.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from lightning.pytorch import Callback, Trainer  # noqa: E402

from dekr.checkpoint import ModelLoadError  # noqa: E402
from dekr.config import load_section  # noqa: E402
from dekr.data.datamodule import DEKRDataModule  # noqa: E402
from dekr.inference import to_coco_results  # noqa: E402
from dekr.metrics.oks_ap import format_table  # noqa: E402
from dekr.module import DEKRModule  # noqa: E402


class CollectPredictions(Callback):
    """Keeps the decoded poses of every evaluation batch (all ranks gathered at the end)."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.image_ids: list[int] = []

    def _collect(self, outputs: Any) -> None:
        if not outputs:
            return
        ids = [o["image_id"] for o in outputs]
        self.image_ids.extend(ids)
        self.results.extend(to_coco_results(outputs, ids))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect(outputs)

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


def parse_decode_overrides(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--decode expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def build_module(args, model_cfg: dict[str, Any]) -> DEKRModule:
    """The evaluated module: any checkpoint (ours, official, MMPose, SuperGradients, a zoo name) with
    the run config's model settings (spec, decode options over the checkpoint's, metric backend)."""
    if args.ckpt:
        settings = {k: v for k, v in model_cfg.items() if k in ("spec", "decode", "metric_backend")}
        try:
            return DEKRModule.from_checkpoint(args.ckpt, **settings)
        except (ModelLoadError, FileNotFoundError) as err:
            raise SystemExit(f"error: {err}") from None
    if not args.random_init:
        raise SystemExit("give --ckpt (a checkpoint file or a model-zoo name), or --random-init for a smoke test")
    return DEKRModule(**model_cfg)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="run config (configs/NAME.yaml or a path)")
    parser.add_argument("--ckpt", help="checkpoint (ours .ckpt; official, MMPose or SuperGradients .pth) or zoo name")
    parser.add_argument("--random-init", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-root", help="override data.root")
    parser.add_argument("--val-annotations", help="annotation json of the evaluated split (relative to root or absolute)")
    parser.add_argument("--val-images", help="image folder of the evaluated split")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--input-size", type=int, help="override the test input size")
    flip = parser.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None)
    flip.add_argument("--no-flip", dest="flip", action="store_false")
    parser.add_argument("--scales", type=float, nargs="+", help="test scales, e.g. 2 1 0.5")
    parser.add_argument("--rescore", help="rescoring-net checkpoint (ours or official final_rescore_*.pth)")
    parser.add_argument("--decode", nargs="*", default=[], help="more DecodeConfig overrides: key=value")
    parser.add_argument("--backend", choices=["faster_coco_eval", "pycocotools"], default=None)
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--batch-size", type=int, default=None, help="images per device per step")
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--limit", type=float, default=None, help="limit_val_batches (smoke tests)")
    parser.add_argument("--out", default=None, help="results json (default: outputs/<config>_<split>_results.json)")
    parser.add_argument("--name", default=None, help="model name in the table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    model_cfg = load_section(args.config, "model")
    data_cfg = dict(load_section(args.config, "data"))
    if args.data_root:
        data_cfg["root"] = args.data_root
    split_key = f"{args.split}_split"
    if args.val_annotations or args.val_images:
        split = dict(data_cfg.get(split_key) or {})
        if args.val_annotations:
            split["annotations"] = args.val_annotations
        if args.val_images:
            split["images"] = args.val_images
        data_cfg[split_key] = split
    if data_cfg.get(split_key) is not None and isinstance(data_cfg[split_key], dict):
        from dekr.data.datamodule import SplitPaths

        data_cfg[split_key] = SplitPaths(**data_cfg[split_key])
    if args.batch_size:
        data_cfg["val_batch_size"] = args.batch_size
    if args.num_workers is not None:
        data_cfg["num_workers"] = args.num_workers
        if args.num_workers == 0:
            data_cfg["persistent_workers"] = False
    datamodule = DEKRDataModule(**data_cfg)

    module = build_module(args, model_cfg)
    decode = dict(module.decode_options)
    if args.flip is not None:
        decode["flip_test"] = args.flip
    if args.scales:
        decode["scales"] = tuple(args.scales)
    if args.rescore:
        decode["rescore"] = args.rescore
    if args.input_size:
        decode["input_size"] = args.input_size
    decode.update(parse_decode_overrides(args.decode))
    module.decode_options = decode
    if args.backend:
        module.metric_backend = args.backend

    collector = CollectPredictions()
    trainer = Trainer(accelerator=args.accelerator, devices=args.devices, precision=args.precision, logger=False,
                      callbacks=[collector], enable_checkpointing=False, enable_model_summary=False,
                      limit_val_batches=args.limit, limit_test_batches=args.limit)
    if args.split == "val":
        trainer.validate(module, datamodule=datamodule, verbose=False)
        stats = getattr(module, "last_val_metrics", {})
    else:
        trainer.test(module, datamodule=datamodule, verbose=False)
        stats = getattr(module, "last_test_metrics", {})
    results = collector.gather(trainer)
    if trainer.is_global_zero:
        stats = {k.split("/", 1)[1]: v for k, v in stats.items() if k.split("/", 1)[1] != "num_images"}
        name = args.name or Path(args.ckpt or "random-init").stem
        cfg = module.decode_config()
        print(f"\n{Path(args.config).stem} {args.split}: flip={cfg.flip_test} scales={list(cfg.scales)} "
              f"rescore={cfg.rescore or 'off'} input={cfg.input_size}")
        print(format_table(stats, name))
        out = Path(args.out or f"outputs/{Path(args.config).stem}_{args.split}_results.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results))
        print(f"{len(results)} poses written to {out}")
    return stats


if __name__ == "__main__":
    main()
