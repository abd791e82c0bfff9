#!/usr/bin/env python3
"""Model speed: the batched offset head vs the official per-keypoint loop, and the whole network.

    python benchmarks/model.py                 # CPU, W32, sizes 512 and 256, batch 1 and 2
    python benchmarks/model.py --device cuda   # adds bf16 autocast and channels_last rows

Prints one table: milliseconds per image for eval forward and for forward+backward, for
* offset head, batched, pure-PyTorch grid_sample backend (our default),
* offset head, batched, torchvision deform_conv2d backend,
* offset head, per-keypoint Python loop with torchvision deform_conv2d (the official structure),
* the whole network (backbone + both heads) with the default head.
The head rows run on the real backbone features' shape (480 channels at 1/4 resolution).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
from timing import ms_per_call

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.models.dekr import DEKRNet, DEKRNetConfig  # noqa: E402


def bench_rows(backbone: str, size: int, batch: int, device: str, repeats: int, dtype_ctx: str,
               channels_last: bool) -> list[tuple[str, float, float]]:
    torch.manual_seed(0)
    nets = {b: DEKRNet(DEKRNetConfig(backbone=backbone, adaptive_backend=b)).to(device)
            for b in ("grid_sample", "torchvision")}
    nets["torchvision"].load_state_dict(nets["grid_sample"].state_dict())
    if channels_last:
        nets = {k: v.to(memory_format=torch.channels_last) for k, v in nets.items()}
    c = nets["grid_sample"].backbone.out_channels
    features = torch.randn(batch, c, size // 4, size // 4, device=device)
    images = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype_ctx == "bf16")

    variants: dict[str, Callable[[], torch.Tensor]] = {
        "head batched grid_sample": lambda: nets["grid_sample"].offset_head(features),
        "head batched torchvision": lambda: nets["torchvision"].offset_head(features),
        "head per-keypoint loop (tv)": lambda: nets["torchvision"].offset_head.forward_per_keypoint(features),
        "whole net (grid_sample head)": lambda: sum(o.float().mean() for o in nets["grid_sample"](images)),
    }
    rows = []
    for name, fn in variants.items():
        net = nets["torchvision" if "(tv)" in name or "torchvision" in name else "grid_sample"]

        def forward() -> None:
            with torch.no_grad(), autocast:
                net.eval()
                fn()

        def forward_backward() -> None:
            net.train()
            with autocast:
                out = fn()
            (out.float().mean() if out.dim() else out).backward()
            net.zero_grad(set_to_none=True)

        fwd = ms_per_call(forward, device, repeats) / batch
        fwd_bwd = ms_per_call(forward_backward, device, repeats) / batch
        rows.append((name, fwd, fwd_bwd))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="hrnet_w32")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    modes = [("fp32", False)]
    if args.device == "cuda":
        modes += [("bf16", False), ("bf16", True)]
    machine = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"DEKR {args.backbone} offset head / network speed on {machine}, torch {torch.__version__}")
    print("ms per image | speed-up = per-keypoint loop time / batched grid_sample time")
    header = f"{'size':>5} {'batch':>5} {'mode':<14} {'variant':<30} {'fwd ms':>9} {'fwd+bwd ms':>11}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for batch in args.batches:
            for dtype, channels_last in modes:
                mode = dtype + (" ch_last" if channels_last else "")
                rows = bench_rows(args.backbone, size, batch, args.device, args.repeats, dtype, channels_last)
                for name, fwd, fb in rows:
                    print(f"{size:>5} {batch:>5} {mode:<14} {name:<30} {fwd:>9.1f} {fb:>11.1f}")
                loop = next(r for r in rows if "loop" in r[0])
                ours = rows[0]
                print(f"{'':>5} {'':>5} {'':<14} {'speed-up batched vs loop':<30} "
                      f"{loop[1] / ours[1]:>8.1f}x {loop[2] / ours[2]:>10.1f}x")


if __name__ == "__main__":
    main()
