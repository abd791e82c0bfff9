#!/usr/bin/env python3
"""Evaluate a DEKR model: OKS-AP table in the paper's layout (in %, said above it) + COCO-format results json.

    python scripts/evaluate.py --config w32_coco.yaml --ckpt runs/w32_coco/checkpoints/best.ckpt
    python scripts/evaluate.py --config w32_coco.yaml --ckpt pose_dekr_hrnetw32_coco.pth --scales 2 1 0.5
    python scripts/evaluate.py --config w32_crowdpose.yaml --ckpt pose_dekr_hrnetw32_crowdpose.pth \\
        --rescore final_rescore_crowd_pose_kpt.pth --split test --devices 4

Runs ``Trainer.validate`` (or ``test`` for ``--split test``), so ``--devices N`` evaluates on N GPUs
(DDP; the OKS-AP metric gathers and de-duplicates the predictions of every rank). The decoding
options: the checkpoint's, then the config's ``model.decode``, then ``--flip/--no-flip``, ``--scales``,
``--rescore``, ``--input-size``, then ``--decode key=value`` (the order of :mod:`dekr.inference.config`).
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.config import load_section
from dekr.config_errors import USER_ERRORS, report_user_error
from dekr.cpu_threads import apply_thread_policy
from dekr.dataclass_config import parse_key_values
from dekr.evaluation import Evaluation, EvaluationStopped, evaluate
from dekr.inference.config import merge_decode_options
from dekr.library_warnings import silence_library_noise
from dekr.metrics.oks_ap import format_table
from dekr.module import DEKRModule
from dekr.preflight import check_output_file

# Torch's CPU threads (dekr.cpu_threads): passive OpenMP waiting, set when dekr was imported above before
# torch, and one thread per idle core.
apply_thread_policy()


#: The printed table's unit, said above it: the paper's layout (68.0), where every other output of the
#: project (``main``'s return value, ``dekr.evaluate``, ``metrics.json``, the training log) has the fraction.
TABLE_UNITS = ("OKS-AP and AR in % (the paper's table layout; dekr.evaluate, metrics.json and the training "
               "log give fractions: 68.0 here is 0.680 there)")


def run_evaluation(args: argparse.Namespace) -> Evaluation:
    """Evaluate as the command line ``args`` say: the config's model section and decode options,
    the flags over them, then :func:`dekr.evaluation.evaluate`. The decode options are checked before
    any checkpoint or image is read."""
    try:
        model_cfg = load_section(args.config, "model")
    except KeyError as err:  # a config without a model section: the config is wrong, not the code
        raise ValueError(err.args[0]) from None
    flags = {"flip_test": args.flip, "scales": args.scales and tuple(args.scales), "rescore": args.rescore,
             "input_size": args.input_size}
    decode = merge_decode_options((f"{args.config}: model.decode", model_cfg.get("decode")),
                                  ("--flip/--scales/--rescore/--input-size",
                                   {k: v for k, v in flags.items() if v is not None}),
                                  ("--decode", parse_key_values(args.decode, "--decode")))
    model: DEKRModule | str = args.ckpt if args.ckpt else DEKRModule(**model_cfg)
    return evaluate(model, args.config, split=args.split, data_root=args.data_root, decode=decode,
                    batch_size=args.batch_size, num_workers=args.num_workers, accelerator=args.accelerator,
                    devices=args.devices, precision=args.precision, limit=args.limit,
                    metric_backend=args.backend, spec=model_cfg.get("spec"),
                    annotations=args.val_annotations, images=args.val_images)


def main(argv: list[str] | None = None) -> dict[str, float]:
    silence_library_noise()
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

    if not args.ckpt and not args.random_init:
        parser.error("give --ckpt (a checkpoint file or a model-zoo name), or --random-init for a smoke test")
    # A config, checkpoint or dataset file that is not there, or an option the config or the flags
    # set wrongly, is the user's to fix: one line naming it, exit status 2 (as scripts/train.py).
    out = Path(args.out or f"outputs/{Path(args.config).stem}_{args.split}_results.json")
    problems = check_output_file(out, "--out", min_free_bytes=2**20)  # before the evaluation, not after it
    if problems:
        raise SystemExit(report_user_error(problems[0]))
    try:
        result = run_evaluation(args)
    except USER_ERRORS as err:
        raise SystemExit(report_user_error(err)) from None
    except EvaluationStopped as stop:  # keep the poses decoded so far; not a success for wrappers
        partial = out.with_name(f"{out.stem}.partial{out.suffix}")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(stop.results))
        print(f"error: {stop}; the {len(stop.results)} poses decoded so far are in {partial}", file=sys.stderr)
        raise SystemExit(128 + getattr(signal, stop.signal_name)) from None
    if result.is_global_zero:
        name = args.name or Path(args.ckpt or "random-init").stem
        cfg = result.decode
        print(f"\n{Path(args.config).stem} {args.split}: flip={cfg.flip_test} scales={list(cfg.scales)} "
              f"rescore={cfg.rescore or 'off'} input={cfg.input_size}")
        print(TABLE_UNITS)
        print(format_table(result.stats, name))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.results))
        print(f"{len(result.results)} poses written to {out}")
    return result.stats


if __name__ == "__main__":
    main()
