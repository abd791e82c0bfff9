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
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dekr.models.dekr import DEKRNet, DEKRNetConfig  # noqa: E402

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=ROOT / "tests/fixtures/coco/000000000785.jpg")
    parser.add_argument("--backbone", default="hrnet_w32")
    parser.add_argument("--size", type=int, default=512, help="square input size, a multiple of 32")
    args = parser.parse_args()

    bgr = cv2.imread(str(args.image))
    if bgr is None:
        sys.exit(f"error: cannot read image {args.image}")
    rgb = cv2.cvtColor(cv2.resize(bgr, (args.size, args.size)), cv2.COLOR_BGR2RGB)
    images = torch.from_numpy((rgb.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD).permute(2, 0, 1)[None]

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
