#!/usr/bin/env python3
"""Training-step throughput (forward + loss + backward + Adam step), images per second.

    python benchmarks/train_step.py                       # CPU: W32 at 512, batch 2
    python benchmarks/train_step.py --device cuda         # + bf16, channels_last, torch.compile rows

Rows:
* ours: batched grouped offset head (all K keypoint branches in one grouped/adaptive conv),
  pure-PyTorch ``grid_sample`` adaptive conv (default), float32;
* ours, torchvision ``deform_conv2d`` backend;
* (GPU) ours with bf16 autocast, + channels_last, + ``torch.compile``;
* official settings: the official head structure (a Python loop over the K keypoint branches with
  torchvision's deformable conv), float32, same batch.
Targets are random tensors of the training-batch shapes (the data pipeline is not timed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
from timing import ms_per_call

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.losses import LossConfig, dekr_loss  # noqa: E402
from dekr.models.dekr import DEKRNet, DEKRNetConfig  # noqa: E402
from per_keypoint_loop import use_per_keypoint_loop  # noqa: E402


def make_batch(batch: int, size: int, k: int, device: str, channels_last: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    r = size // 4
    image = torch.randn(batch, 3, size, size, generator=g)
    out = {"image": image, "heatmap": torch.rand(batch, k + 1, r, r, generator=g),
           "heatmap_weight": torch.ones(batch, k + 1, r, r), "offset": torch.randn(batch, 2 * k, r, r, generator=g),
           "offset_weight": (torch.rand(batch, 2 * k, r, r, generator=g) > 0.95).float()}
    out = {key: v.to(device) for key, v in out.items()}
    if channels_last:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def make_step(cfg: DEKRNetConfig, batch: dict[str, torch.Tensor], device: str, bf16: bool, channels_last: bool,
              compile: bool, official_loop: bool, compile_backend: str = "inductor") -> Callable[[], float]:
    torch.manual_seed(0)
    net = DEKRNet(cfg).to(device).train()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if official_loop:
        use_per_keypoint_loop(net.offset_head)
    forward = torch.compile(net, backend=compile_backend) if compile else net
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_cfg = LossConfig()

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            heatmaps, offsets = forward(batch["image"])
        loss = dekr_loss(heatmaps.float(), offsets.float(), batch, loss_cfg)["loss"]
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="hrnet_w32")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, help="images per step (default: 2 on CPU, 10 on GPU = official per GPU)")
    parser.add_argument("--steps", type=int, help="timed steps (default: 3 on CPU, 20 on GPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps (default: 1 on CPU, 5 on GPU; compile: +3)")
    parser.add_argument("--rows", default="", help="comma-separated subset of row names to run")
    args = parser.parse_args(argv)
    gpu = args.device.startswith("cuda")
    batch = args.batch or (10 if gpu else 2)
    steps = args.steps or (20 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    heatmap_channels = 48 if "w48" in args.backbone else 32
    base = dict(backbone=args.backbone, heatmap_channels=heatmap_channels)
    device = "cuda" if gpu else "cpu"
    torch.backends.cudnn.benchmark = True

    rows: list[tuple[str, DEKRNetConfig, bool, bool, bool, bool]] = [
        ("ours fp32 (grid_sample)", DEKRNetConfig(**base), False, False, False, False),
        ("ours fp32 (torchvision deform_conv2d)", DEKRNetConfig(**base, adaptive_backend="torchvision"),
         False, False, False, False),
    ]
    if gpu:
        rows += [
            ("ours bf16-mixed", DEKRNetConfig(**base), True, False, False, False),
            ("ours bf16-mixed + channels_last", DEKRNetConfig(**base), True, True, False, False),
            ("ours bf16-mixed + channels_last + compile", DEKRNetConfig(**base), True, True, True, False),
        ]
    rows.append(("official settings (per-keypoint loop, deform_conv2d, fp32)",
                 DEKRNetConfig(**base, adaptive_backend="torchvision"), False, False, False, True))
    wanted = {r.strip() for r in args.rows.split(",") if r.strip()}
    name = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"DEKR training step, {args.backbone} at {args.size}x{args.size}, batch {batch}, {name}, torch "
          f"{torch.__version__}")
    print("| setting | images/s | ms/step |")
    print("|---|---|---|")
    for label, cfg, bf16, cl, comp, official in rows:
        if wanted and not any(w in label for w in wanted):
            continue
        data = make_batch(batch, args.size, cfg.num_keypoints, device, cl)
        step = make_step(cfg, data, device, bf16, cl, comp, official)
        ms = ms_per_call(step, device, steps, warmup + (3 if comp else 0))
        print(f"| {label} | {1000 * batch / ms:.2f} | {ms:.0f} |", flush=True)
        del step, data
        if gpu:
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
