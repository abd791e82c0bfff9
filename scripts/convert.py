#!/usr/bin/env python3
"""Convert any DEKR checkpoint (official, MMPose, SuperGradients, a zoo name) into one of ours.

    python scripts/convert.py pose_dekr_hrnetw32_coco.pth --out w32_coco.ckpt
    python scripts/convert.py mmpose/dekr-w48-coco --out w48_mmpose.ckpt
    python scripts/convert.py pose_dekr_hrnetw32_coco.pth --config w32_coco.yaml --out w32_coco.ckpt

The format and the variant are read off the file (:func:`dekr.checkpoint.load_checkpoint`); with
``--config`` the checkpoint must also be that run config's architecture (a W48 file with
``w32_coco.yaml`` fails, naming what differs), and the run config's other model settings (decode,
loss, optimiser) are kept. The result loads with ``dekr.DEKRModule.load_from_checkpoint(...)`` and
everywhere a checkpoint is taken.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.checkpoint import ModelLoadError, save_module_checkpoint  # noqa: E402
from dekr.config import load_section, resolve_config_path  # noqa: E402
from dekr.library_warnings import silence_library_noise  # noqa: E402
from dekr.models.dekr import DEKRNetConfig  # noqa: E402
from dekr.module import DEKRModule  # noqa: E402
from dekr.preflight import check_output_file  # noqa: E402

#: Fields that define the architecture (the rest of model.net, e.g. backends and init, may differ).
ARCHITECTURE = ("backbone", "num_keypoints", "heatmap_channels", "offset_channels_per_keypoint", "offset_blocks",
                "offset_block", "disentangled", "dilation")


def main(argv: list[str] | None = None) -> int:
    silence_library_noise()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="checkpoint file (e.g. pose_dekr_hrnetw32_coco.pth) or model-zoo name")
    parser.add_argument("--config", help="run config the checkpoint must match, e.g. w32_coco.yaml")
    parser.add_argument("--spec", help="keypoint spec (for checkpoints whose K is neither 17 nor 14)")
    parser.add_argument("--out", required=True, type=Path, help="output .ckpt path")
    args = parser.parse_args(argv)

    problems = check_output_file(args.out, "--out")  # before converting, not after
    if problems:
        print(f"error: {problems[0]}", file=sys.stderr)
        return 1
    model_cfg: dict = {}
    if args.config:
        model_cfg = dict(load_section(resolve_config_path(args.config), "model"))
    try:
        module = DEKRModule.from_checkpoint(args.source, spec=args.spec or model_cfg.get("spec"),
                                            **{k: v for k, v in model_cfg.items() if k not in ("net", "spec")})
        if args.config:
            wanted = DEKRNetConfig.from_dict(dict(model_cfg.get("net") or {}))
            have = module.net.config
            differ = [f"{f}: checkpoint {getattr(have, f)!r} vs config {getattr(wanted, f)!r}"
                      for f in ARCHITECTURE if getattr(have, f) != getattr(wanted, f)]
            if differ:
                raise ModelLoadError(f"{args.source} does not fit {args.config}: " + "; ".join(differ))
    except (ModelLoadError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    save_module_checkpoint(module, args.out)
    n_params = sum(p.numel() for p in module.net.parameters())
    print(f"converted {args.source} ({module.net.config.backbone}, K={module.net.num_keypoints}, spec "
          f"{module.spec.name}, {n_params:,} parameters) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
