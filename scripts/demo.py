#!/usr/bin/env python3
"""Smoke demo: build DEKR-W32, run it on a real image from the test fixtures, print shapes and timing.

    python scripts/demo.py [--image tests/fixtures/coco/000000000785.jpg] [--backbone hrnet_w32] [--size 512]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# dekr before torch: importing it sets OpenMP's passive waiting, which libgomp reads as torch loads.
from dekr.cpu_threads import apply_thread_policy  # noqa: E402

import torch  # noqa: E402

from dekr.inference.preprocess import to_input_tensor  # noqa: E402
from dekr.library_warnings import silence_library_noise  # noqa: E402
from dekr.models.dekr import DEKRNet, DEKRNetConfig  # noqa: E402

apply_thread_policy()  # torch's CPU threads: one per idle core (dekr.cpu_threads)


def main() -> None:
    silence_library_noise()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=ROOT / "tests/fixtures/coco/000000000785.jpg")
    parser.add_argument("--backbone", default="hrnet_w32")
    parser.add_argument("--size", type=int, default=512, help="square input size, a multiple of 32")
    args = parser.parse_args()

    bgr = cv2.imread(str(args.image))
    if bgr is None:
        sys.exit(f"error: cannot read image {args.image}")
    rgb = cv2.cvtColor(cv2.resize(bgr, (args.size, args.size)), cv2.COLOR_BGR2RGB)
    images = to_input_tensor([rgb], "cpu")  # the library's ImageNet normalisation, (1, 3, size, size)

    net = DEKRNet(DEKRNetConfig(backbone=args.backbone)).eval()
    n_params = sum(p.numel() for p in net.parameters())
    with torch.no_grad():
        net(images)  # warm-up
        start = time.perf_counter()
        heatmaps, offsets = net(images)
        elapsed = time.perf_counter() - start
    print(f"DEKR {args.backbone}: {n_params:,} parameters (random init)")
    print(f"image {args.image.name} {bgr.shape[1]}x{bgr.shape[0]} -> input {tuple(images.shape)}")
    print(f"heatmaps {tuple(heatmaps.shape)} (K=17 keypoints + center), offsets {tuple(offsets.shape)} (x, y per keypoint)")
    print(f"forward: {elapsed * 1000:.0f} ms on CPU ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
