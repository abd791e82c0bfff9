#!/usr/bin/env python3
"""A synthetic image and video to try the demo model on: the people it learned, in crowds it never saw.

    python scripts/make_demo_media.py                          # demo_media/people.jpg, demo_media/walking.mp4
    python scripts/infer.py --ckpt runs/demo/checkpoints/best.ckpt --input demo_media/people.jpg
    python scripts/infer.py --ckpt runs/demo/checkpoints/best.ckpt --input demo_media/walking.mp4

Writes into ``--out``: ``people.jpg``, a wide image of ``--people`` synthetic people side by side, and
``walking.mp4``, ``--frames`` frames (``--fps``) of another such scene whose people walk, for tracking
to follow. The people are the demo's (``--config``: its ``data.synthetic`` person heights and seed),
each at the training scale relative to the image height, in scenes drawn from random streams no
training or validation image uses (:mod:`dekr.data.synthetic_crowd`).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.config import load_section
from dekr.data.synthetic import SyntheticConfig
from dekr.data.synthetic_crowd import CrowdConfig, CrowdScene, crowd_scene
from dekr.dataclass_config import as_config

#: The scene index of the image and of the video, under the same seed.
IMAGE_SCENE, VIDEO_SCENE = 0, 1
#: Full-resolution colour (4:4:4): the people's left and right sides differ by colour, which the usual
#: 4:2:0 chroma subsampling blurs into the noisy background (2.8 grey levels off on average, not 7.4).
JPEG_OPTIONS = [cv2.IMWRITE_JPEG_QUALITY, 95,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo_media"), help="output folder (default demo_media/)")
    p.add_argument("--config", default="demo.yaml", help="run config whose data.synthetic people to draw")
    p.add_argument("--seed", type=int, help="scene seed (default: the config's data.synthetic.seed)")
    p.add_argument("--people", type=int, default=4, help="people per scene (default 4)")
    p.add_argument("--height", type=int, default=256, help="image and video height, pixels (default 256)")
    p.add_argument("--frames", type=int, default=48, help="video frames (default 48)")
    p.add_argument("--fps", type=float, default=12.0, help="video frame rate (default 12)")
    return p.parse_args(argv)


def write_video(path: Path, frames: Iterable[np.ndarray], size: tuple[int, int], fps: float) -> None:
    """(H, W, 3) RGB uint8 frames of ``size`` = (W, H), both even -> an MPEG-4 (``mp4v``) video that
    OpenCV reads back."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise SystemExit(f"error: OpenCV cannot write an mp4v video to {path}")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def demo_scenes(args: argparse.Namespace) -> tuple[CrowdScene, CrowdScene]:
    """The crowd scenes of the image and of the video: the people of ``args.config``'s
    ``data.synthetic`` (heights, seed unless ``args.seed``), ``args.people`` of them ``args.height``
    pixels high, the video's with room for ``args.frames`` frames of walking."""
    synthetic = as_config(SyntheticConfig, load_section(args.config, "data").get("synthetic"),
                          f"{args.config}: data.synthetic")
    seed = synthetic.seed if args.seed is None else args.seed
    crowd = CrowdConfig(num_people=args.people, height=args.height, min_height=synthetic.min_height,
                        max_height=synthetic.max_height)
    return (crowd_scene(seed, IMAGE_SCENE, crowd),
            crowd_scene(seed, VIDEO_SCENE, replace(crowd, num_frames=args.frames)))


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    problems = [f"--height {args.height}: must be even and at least 32 (video codecs need even sizes)"
                if args.height < 32 or args.height % 2 else None,
                f"--people {args.people}: must be at least 1" if args.people < 1 else None,
                f"--frames {args.frames}: must be at least 1" if args.frames < 1 else None,
                f"--fps {args.fps:g}: must be positive" if args.fps <= 0 else None]
    if problem := next((p for p in problems if p), None):
        raise SystemExit(f"error: {problem}")
    image_scene, scene = demo_scenes(args)
    args.out.mkdir(parents=True, exist_ok=True)
    image_path, video_path = args.out / "people.jpg", args.out / "walking.mp4"
    image, _ = image_scene.frame(0)
    if not cv2.imwrite(str(image_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), JPEG_OPTIONS):
        raise SystemExit(f"error: cannot write {image_path}")
    frames = (scene.frame(t)[0] for t in range(args.frames))
    write_video(video_path, frames, (scene.width, scene.height), args.fps)
    print(f"wrote {image_path} ({image.shape[1]}x{image.shape[0]}, {args.people} people) and {video_path} "
          f"({scene.width}x{scene.height}, {args.frames} frames at {args.fps:g} fps)")
    return [image_path, video_path]


if __name__ == "__main__":
    main()
