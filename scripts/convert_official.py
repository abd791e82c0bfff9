#!/usr/bin/env python3
"""Convert an official DEKR checkpoint into a DEKRModule checkpoint.

    python scripts/convert_official.py pose_dekr_hrnetw32_coco.pth --config configs/w32_coco.yaml --out w32_coco.ckpt

The result loads with ``dekr.DEKRModule.load_from_checkpoint("w32_coco.ckpt")``. Conversion is
strict: a checkpoint of another variant fails, naming missing/unexpected keys and shape conflicts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.checkpoint import save_module_checkpoint  # noqa: E402
from dekr.config import load_section, resolve_config_path  # noqa: E402
from dekr.convert import CheckpointMismatchError  # noqa: E402
from dekr.module import DEKRModule  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("official", type=Path, help="official DEKR .pth (e.g. pose_dekr_hrnetw32_coco.pth)")
    parser.add_argument("--config", required=True, help="run config naming the variant, e.g. w32_coco.yaml")
    parser.add_argument("--out", required=True, type=Path, help="output .ckpt path")
    args = parser.parse_args(argv)

    config = resolve_config_path(args.config)
    try:
        module = DEKRModule.from_official(str(args.official), **load_section(config, "model"))
    except (CheckpointMismatchError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    save_module_checkpoint(module, args.out)
    n_params = sum(p.numel() for p in module.parameters())
    print(f"converted {args.official} ({module.net.config.backbone}, K={module.net.num_keypoints}, "
          f"{n_params:,} parameters) with {config} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
