#!/usr/bin/env python3
"""Pose inference on images, folders, videos and cameras: drawings + COCO-format results.

    python scripts/infer.py --ckpt runs/demo/checkpoints/best.ckpt --input demo_media/people.jpg  # demo model
    python scripts/infer.py --ckpt pose_dekr_hrnetw32_coco.pth --input images/ --out outputs/run1
    python scripts/infer.py --ckpt w32.ckpt --input clip.mp4 --device cuda --batch-size 16
    python scripts/infer.py --ckpt w32.ckpt --input frames/ --sequence --fps 25   # a folder of video frames
    python scripts/infer.py --ckpt w32.ckpt --input 0 --max-frames 300            # camera 0
    python scripts/infer.py --ckpt w32.onnx --input photo.jpg                     # an exported ONNX model

An argument parser over the library: ``dekr.load`` (:mod:`dekr.inference.predictor`), the readers of
:mod:`dekr.inference.sources` and the writer of :mod:`dekr.inference.outputs` (which documents the
outputs in ``--out``, default ``outputs/infer/<input name>``). Video, camera and ``--sequence`` frames
are tracked and smoothed. Results are written as the run goes, so a kill keeps all but the last few
images; SIGTERM and Ctrl-C keep all and exit with 128 + the signal number. An --out holding an earlier
run's outputs is refused unless ``--overwrite``. Options in ``--infer-config`` (a YAML with ``decode``, ``smoothing``,
``tracking``, ``draw`` sections, or those under an ``infer:`` key) and ``--<section> key=value``.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.cpu_threads import apply_thread_policy  # noqa: E402
from dekr.library_warnings import silence_library_noise  # noqa: E402

# Torch's CPU threads (dekr.cpu_threads): passive OpenMP waiting, set when dekr was imported above before
# torch, and one thread per idle core.
apply_thread_policy()

SECTIONS = {"decode": "DecodeConfig overrides (pose_thr, input_size, flip_test, ...)",
            "smoothing": "One Euro options (min_cutoff, beta, d_cutoff, ...)",
            "tracking": "tracking options (oks_threshold, max_age, ...)",
            "draw": "drawing options (kpt_thr, color_by, max_poses, ...)"}


def load_sections(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The ``--infer-config`` sections (each a dict, empty when absent)."""
    data: dict[str, Any] = {}
    if args.infer_config:
        if not Path(args.infer_config).is_file():
            raise SystemExit(f"error: --infer-config {args.infer_config} does not exist")
        data = yaml.safe_load(Path(args.infer_config).read_text()) or {}
        data = data.get("infer", data)
        if unknown := set(data) - set(SECTIONS):
            raise SystemExit(f"error: {args.infer_config}: unknown section(s) {sorted(unknown)}; known: "
                             f"{', '.join(SECTIONS)}")
    return {s: dict(data.get(s) or {}) for s in SECTIONS}


#: What an inference run writes in --out (outputs.write_outputs): replaced with --overwrite, nothing else.
OUTPUT_FILES = ("results.json", "images.json", "images/*.jpg", "*_poses.mp4")


def prepare_out(out_dir: Path, overwrite: bool) -> None:
    """Refuse an --out that holds an earlier run's results (unless ``overwrite``: its outputs are removed)
    or cannot be written: before any image is read."""
    from dekr.preflight import check_output_file

    earlier = [p for pattern in OUTPUT_FILES for p in out_dir.glob(pattern)]
    if earlier and not overwrite:
        raise SystemExit(f"error: --out {out_dir} already holds the outputs of an earlier run ({len(earlier)} files, "
                         "e.g. results.json); pass --overwrite to replace them, or choose another --out")
    problems = check_output_file(out_dir / "results.json", "--out", min_free_bytes=2**20)
    if problems:
        raise SystemExit(f"error: {problems[0]}")
    for path in [*earlier, *out_dir.glob(".*.json.tmp")]:  # (temporary files a killed run left behind)
        path.unlink()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint (ours .ckpt; official, MMPose or SuperGradients "
                   ".pth; exported .onnx) or model-zoo name")
    p.add_argument("--input", required=True, help="image, folder of images, video file, or camera index (0, 1..)")
    p.add_argument("--out", help="output folder (default outputs/infer/<input name>)")
    p.add_argument("--spec", help="keypoint spec you expect (error if the checkpoint is for another)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=int, help="images / frames per forward pass (default: decode.batch_size)")
    p.add_argument("--input-size", type=int, help="test input size (short side, multiple of 64)")
    flip = p.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None, help="flip test (official)")
    flip.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--scales", type=float, nargs="+", help="test scales, e.g. 2 1 0.5")
    p.add_argument("--infer-config", help="YAML with decode / smoothing / tracking / draw sections")
    for section, what in SECTIONS.items():
        p.add_argument(f"--{section}", nargs="*", help=f"{what} key=value (over --infer-config)")
    p.add_argument("--kpt-thr", type=float, help="keypoint score threshold for drawing")
    p.add_argument("--pose-thr", type=float, help="poses scoring under this are dropped from the results and "
                   "drawings (decode.pose_thr: the default of dekr.load; 0 keeps every candidate)")
    p.add_argument("--color-by", choices=["limb", "person"], help="skeleton colors (default: limb; video: person)")
    p.add_argument("--no-draw", action="store_true", help="results json only")
    p.add_argument("--no-smooth", action="store_true", help="video: no temporal smoothing")
    p.add_argument("--no-track", action="store_true", help="video: no identity tracking (implies --no-smooth)")
    p.add_argument("--sequence", action="store_true", help="a folder holds consecutive video frames: track, smooth")
    p.add_argument("--fps", type=float, help="frame rate for smoothing (default: the video's, else 30)")
    p.add_argument("--max-frames", type=int, help="stop a video, camera or folder after this many frames")
    p.add_argument("--write-every", type=int, default=50,
                   help="rewrite results.json every N images / frames (and every 10 s): what a kill can lose")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results and drawings of an earlier run in --out (else refused)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    silence_library_noise()
    from dekr.checkpoint import ModelLoadError
    from dekr.dataclass_config import dataclass_from_layers, parse_key_values
    from dekr.inference.config import merge_decode_options
    from dekr.inference.outputs import DrawOptions, write_outputs
    from dekr.inference.predictor import load
    from dekr.inference.smoothing import SmoothingConfig
    from dekr.inference.sources import InputError, open_source
    from dekr.inference.tracking import TrackingConfig

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Precedence: checkpoint < --infer-config < option flags < --<section> key=value.
    files = load_sections(args)
    flags = {"draw": {"kpt_thr": args.kpt_thr, "color_by": args.color_by},
             "decode": {"input_size": args.input_size, "flip_test": args.flip, "pose_thr": args.pose_thr,
                        "scales": args.scales and tuple(args.scales), "batch_size": args.batch_size}}
    try:
        layers = {s: [(f"{args.infer_config}: {s}", files[s]),
                      (f"the {s} flags", {k: v for k, v in flags.get(s, {}).items() if v is not None}),
                      (f"--{s}", parse_key_values(getattr(args, s), f"--{s}"))] for s in SECTIONS}
        source = open_source(args.input, args.sequence, args.fps, args.max_frames)
        draw = dataclass_from_layers(DrawOptions, layers["draw"], "draw")
        smoothing = dataclass_from_layers(SmoothingConfig, layers["smoothing"], "smoothing")
        tracking = dataclass_from_layers(TrackingConfig, layers["tracking"], "tracking")
        predictor = load(args.ckpt, args.device, args.spec, **merge_decode_options(*layers["decode"]))
    except (InputError, ModelLoadError, FileNotFoundError, ValueError, TypeError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"model: {predictor}")
    draw.enabled = draw.enabled and not args.no_draw
    tracking.enabled = tracking.enabled and not args.no_track
    smoothing.enabled = smoothing.enabled and tracking.enabled and not args.no_smooth
    streaming = source.kind in ("video", "camera") or args.sequence
    # Poses under decode.pose_thr are dropped by the predictor, as in dekr.load(...)(image).
    results = predictor.stream(source, tracking, smoothing) if streaming else predictor.predict_frames(source)
    out_dir = Path(args.out or Path("outputs") / "infer" / source.name)
    prepare_out(out_dir, args.overwrite)
    report = write_outputs(results, source, out_dir, predictor.spec, draw, progress=not args.quiet,
                           write_every=max(1, args.write_every))

    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if report.processed:
        rate = report.processed / report.seconds if report.seconds > 0 else float("nan")
        print(f"{report.processed} {'frames' if streaming else 'images'} ({rate:.1f}/s), {report.poses} poses -> "
              f"{out_dir / 'results.json'}" + (f"; {len(report.skipped)} skipped" if report.skipped else ""))
    if report.error is not None:
        kept = f" ({report.processed} processed, results kept in {out_dir})" if report.processed else ""
        if report.stopped_by:  # not a success, for wrappers and schedulers: 128 + the signal number
            print(f"error: {report.error}{kept}", file=sys.stderr)
            raise SystemExit(128 + getattr(signal, report.stopped_by))
        raise SystemExit(f"error: {report.error}{kept}")
    return {"input": str(args.input), "kind": source.kind, "processed": report.processed,
            "poses": report.poses, "skipped": [str(p) for p, _ in report.skipped], "warnings": report.warnings,
            "out": str(out_dir), "seconds": round(report.seconds, 2), "error": None,
            "smoothing": asdict(smoothing) if streaming else None, "tracking": asdict(tracking) if streaming else None}


if __name__ == "__main__":
    main()
