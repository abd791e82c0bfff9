#!/usr/bin/env python3
"""Model speed and peak memory: the batched offset head vs the official per-keypoint loop, and the
whole network with either head.

    python benchmarks/model.py                 # CPU, W32, sizes 512 and 256, batch 1 and 2
    python benchmarks/model.py --quick         # CPU, W32 at 128, batch 1: a cheap check that it runs
    python benchmarks/model.py --device cuda   # adds bf16 autocast and channels_last rows

Prints one table: milliseconds per image (the fastest of --repeats calls) for eval forward and
for forward+backward, and the peak memory of one such call (MiB above the memory held before
it: the loaded networks and their inputs), for
* offset head, batched, pure-PyTorch grid_sample backend (our default),
* offset head, batched, torchvision deform_conv2d backend,
* offset head, per-keypoint Python loop with torchvision deform_conv2d (the official structure),
* the whole network (backbone + both heads) with the batched grid_sample head,
* the whole network with the per-keypoint loop head (the official structure).
The head rows run on the real backbone features' shape (480 channels at 1/4 resolution for W32).
Peak memory on CPU is the resident set, measured in a fresh process per row (see
``peak_memory.py``); on CUDA the allocator's peak, in this process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from peak_memory import CPU_MALLOC_ENV, cpu_peak_supported, peak_growth_mib
from timing import fastest_ms_per_call

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.models.dekr import DEKRNet, DEKRNetConfig  # noqa: E402
from per_keypoint_loop import use_per_keypoint_loop  # noqa: E402

HEAD_GRID_SAMPLE = "head batched grid_sample"
HEAD_TORCHVISION = "head batched torchvision"
HEAD_LOOP = "head per-keypoint loop (tv)"
NET_GRID_SAMPLE = "whole net (grid_sample head)"
NET_LOOP = "whole net (per-keypoint loop)"
VARIANTS = (HEAD_GRID_SAMPLE, HEAD_TORCHVISION, HEAD_LOOP, NET_GRID_SAMPLE, NET_LOOP)
#: Which network each variant runs: batched grid_sample, batched torchvision, or per-keypoint loop.
VARIANT_NET = {HEAD_GRID_SAMPLE: "grid_sample", HEAD_TORCHVISION: "torchvision", HEAD_LOOP: "loop",
               NET_GRID_SAMPLE: "grid_sample", NET_LOOP: "loop"}
#: Ratio rows of the table: (label, ours, the official structure).
COMPARISONS = (("head: batched vs loop", HEAD_GRID_SAMPLE, HEAD_LOOP), ("net: batched vs loop", NET_GRID_SAMPLE, NET_LOOP))


@dataclass
class Workload:
    """The networks (same weights) and inputs of one table block."""

    nets: dict[str, DEKRNet]
    features: torch.Tensor  # (N, C, H/4, W/4): the backbone's output shape
    images: torch.Tensor  # (N, 3, H, W)
    autocast: torch.autocast


def build_workload(backbone: str, size: int, batch: int, device: str, dtype_ctx: str, channels_last: bool,
                   which: tuple[str, ...] = ("grid_sample", "torchvision", "loop")) -> Workload:
    """Networks ``which`` (``grid_sample``, ``torchvision``: batched heads with that backend; ``loop``:
    the official per-keypoint loop head), all with the weights of one seeded network."""
    torch.manual_seed(0)
    reference = DEKRNet(DEKRNetConfig(backbone=backbone))
    nets = {}
    for name in which:
        net = DEKRNet(DEKRNetConfig(backbone=backbone, adaptive_backend="grid_sample" if name == "grid_sample"
                                    else "torchvision"))
        net.load_state_dict(reference.state_dict())
        if name == "loop":
            use_per_keypoint_loop(net.offset_head)
        net = net.to(device)
        nets[name] = net.to(memory_format=torch.channels_last) if channels_last else net
    del reference
    c = next(iter(nets.values())).backbone.out_channels
    features = torch.randn(batch, c, size // 4, size // 4, device=device)
    images = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype_ctx == "bf16")
    return Workload(nets, features, images, autocast)


def step_functions(work: Workload, variant: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """(eval forward, train forward + backward) of ``variant``, each a complete call to measure."""
    net = work.nets[VARIANT_NET[variant]]
    if variant.startswith("head"):
        def run() -> torch.Tensor:
            return net.offset_head(work.features)
    else:
        def run() -> torch.Tensor:
            return sum(o.float().mean() for o in net(work.images))

    def forward() -> None:
        net.eval()
        with torch.no_grad(), work.autocast:
            run()

    def forward_backward() -> None:
        net.train()
        with work.autocast:
            out = run()
        (out.float().mean() if out.dim() else out).backward()
        net.zero_grad(set_to_none=True)

    return forward, forward_backward


def bench_rows(backbone: str, size: int, batch: int, device: str, repeats: int, dtype_ctx: str,
               channels_last: bool) -> list[tuple[str, float, float]]:
    """(variant, eval forward ms per image, forward+backward ms per image) for each of :data:`VARIANTS`,
    each the fastest of ``repeats`` calls."""
    work = build_workload(backbone, size, batch, device, dtype_ctx, channels_last)
    rows = []
    for name in VARIANTS:
        forward, forward_backward = step_functions(work, name)
        fwd = fastest_ms_per_call(forward, device, repeats) / batch
        fwd_bwd = fastest_ms_per_call(forward_backward, device, repeats) / batch
        rows.append((name, fwd, fwd_bwd))
    return rows


def measure_peak_memory(variant: str, backbone: str, size: int, batch: int, device: str, dtype_ctx: str,
                        channels_last: bool) -> tuple[float, float]:
    """(eval forward, train forward+backward) peak MiB of ``variant`` in this process, after one
    untimed call of each (lazy initialisation is not the step's memory)."""
    work = build_workload(backbone, size, batch, device, dtype_ctx, channels_last, (VARIANT_NET[variant],))
    forward, forward_backward = step_functions(work, variant)
    forward()
    forward_backward()
    return peak_growth_mib(forward, device), peak_growth_mib(forward_backward, device)


def memory_rows(backbone: str, size: int, batch: int, device: str, dtype_ctx: str,
                channels_last: bool) -> dict[str, tuple[float, float]]:
    """Variant -> (eval forward, train forward+backward) peak MiB for the whole batch.

    CUDA: measured here, one variant after another. CPU: each variant in a fresh process with
    :data:`peak_memory.CPU_MALLOC_ENV` (NaN where the peak resident set cannot be reset)."""
    if device != "cpu":
        return {v: measure_peak_memory(v, backbone, size, batch, device, dtype_ctx, channels_last) for v in VARIANTS}
    if not cpu_peak_supported():
        return {v: (float("nan"), float("nan")) for v in VARIANTS}
    rows = {}
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--memory-of", variant, "--backbone", backbone, "--sizes", str(size),
                   "--batches", str(batch), "--device", device, "--threads", str(torch.get_num_threads())]
        done = subprocess.run(command, env={**os.environ, **CPU_MALLOC_ENV}, capture_output=True, text=True,
                              check=False)
        if done.returncode:
            raise RuntimeError(f"measuring the memory of {variant!r} failed:\n{done.stderr}")
        rows[variant] = tuple(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="hrnet_w32")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true",
                        help="a cheap run: size 128, batch 1, one timed repeat (tiny maps: the ratios "
                             "are not those of the default sizes, where the memory targets hold)")
    parser.add_argument("--memory-of", choices=VARIANTS, help=argparse.SUPPRESS)  # a measuring child process
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.batches, args.repeats = [128], [1], 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps(measure_peak_memory(args.memory_of, args.backbone, args.sizes[0], args.batches[0],
                                             args.device, "fp32", False)))
        return

    modes = [("fp32", False)]
    if args.device == "cuda":
        modes += [("bf16", False), ("bf16", True)]
    machine = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"DEKR {args.backbone} offset head / network speed and memory on {machine}, torch {torch.__version__}")
    print("ms per image, fastest call; peak MiB for the whole batch above the loaded networks and inputs "
          f"({'allocated' if args.device == 'cuda' else 'resident, a fresh process per row'}); "
          "ratio rows: loop time / batched time (speed-up) and batched memory / loop memory")
    header = (f"{'size':>5} {'batch':>5} {'mode':<14} {'variant':<30} {'fwd ms':>9} {'fwd+bwd ms':>11} "
              f"{'eval MiB':>9} {'train MiB':>10}")
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for batch in args.batches:
            for dtype, channels_last in modes:
                mode = dtype + (" ch_last" if channels_last else "")
                times = {name: (fwd, fb) for name, fwd, fb in
                         bench_rows(args.backbone, size, batch, args.device, args.repeats, dtype, channels_last)}
                memory = memory_rows(args.backbone, size, batch, args.device, dtype, channels_last)
                for name in VARIANTS:
                    print(f"{size:>5} {batch:>5} {mode:<14} {name:<30} {times[name][0]:>9.1f} {times[name][1]:>11.1f} "
                          f"{memory[name][0]:>9.1f} {memory[name][1]:>10.1f}")
                for label, ours, loop in COMPARISONS:
                    print(f"{'':>5} {'':>5} {'':<14} {label:<30} "
                          f"{ratio(times[loop][0], times[ours][0]):>8.1f}x {ratio(times[loop][1], times[ours][1]):>10.1f}x "
                          f"{ratio(memory[ours][0], memory[loop][0]):>8.2f}x {ratio(memory[ours][1], memory[loop][1]):>9.2f}x")


if __name__ == "__main__":
    main()
