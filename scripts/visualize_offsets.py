#!/usr/bin/env python3
"""Draw where the adaptive convolutions sample (the DEKR paper's figure): at each detected person
centre, the 9 taps of every adaptive conv of every keypoint branch, one color per keypoint.

    python scripts/visualize_offsets.py --ckpt runs/demo/checkpoints/best.ckpt --image demo_media/people.jpg
    python scripts/visualize_offsets.py --ckpt mmpose/dekr-w32-coco --image photo.jpg \\
        --keypoints nose,left_wrist --min-score 0.1 --out nose_wrist.png

The centres are the scale-1 centre-heatmap peaks the poses are regressed from
(:func:`dekr.inference.offset_sampling.image_offset_sampling`); the last conv's taps are filled dots,
the earlier convs' rings, the centre a white dot. A network with plain offset blocks
(``offset_block: basic``) has no sampling points to draw: it is refused with a message.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.cpu_threads import apply_thread_policy  # noqa: E402
from dekr.library_warnings import silence_library_noise  # noqa: E402

# Torch's CPU threads (dekr.cpu_threads): passive OpenMP waiting, set when dekr was imported above before
# torch, and one thread per idle core.
apply_thread_policy()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint (ours .ckpt; official, MMPose or SuperGradients .pth) "
                   "or model-zoo name; not an exported .onnx")
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--out", help="PNG to write (default outputs/offsets/<image name>_offsets.png)")
    p.add_argument("--keypoints", help="comma-separated keypoint names to draw (default: all), e.g. nose,left_wrist")
    p.add_argument("--min-score", type=float, help="minimum centre heatmap score (default: decode.keypoint_threshold)")
    p.add_argument("--max-people", type=int, help="at most this many centres, best first (default: decode's)")
    p.add_argument("--spec", help="keypoint spec you expect (error if the checkpoint is for another)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--input-size", type=int, help="test input size (short side, multiple of 64)")
    flip = p.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None,
                      help="find the centres on the flip-averaged heatmap (the checkpoint's default)")
    flip.add_argument("--no-flip", dest="flip", action="store_false")
    return p.parse_args(argv)


def keypoint_indices(names: str | None, keypoint_names: tuple[str, ...], branches: int) -> list[int] | None:
    """Indices of the comma-separated ``names`` (None: all); ValueError naming the known ones."""
    if not names:
        return None
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if unknown := [n for n in wanted if n not in keypoint_names]:
        raise ValueError(f"--keypoints: unknown keypoint(s) {unknown}; known: {', '.join(keypoint_names)}")
    if branches == 1:
        raise ValueError("--keypoints: this network's offset head is not disentangled (one branch shared by "
                         "all keypoints); leave --keypoints out")
    return [keypoint_names.index(n) for n in wanted]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    silence_library_noise()
    import cv2

    from dekr.config_errors import USER_ERRORS, report_user_error
    from dekr.file_publish import atomic_write_bytes
    from dekr.inference.offset_sampling import adaptive_convs, image_offset_sampling
    from dekr.inference.predictor import load
    from dekr.inference.sources import InputError, read_image
    from dekr.preflight import check_output_file
    from dekr.visualize import draw_sampling_points, keypoint_colors

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out or Path("outputs") / "offsets" / f"{Path(args.image).stem}_offsets.png")
    if problems := check_output_file(out, "--out", min_free_bytes=2**20):
        raise SystemExit(report_user_error(problems[0]))
    decode = {k: v for k, v in {"input_size": args.input_size, "flip_test": args.flip}.items() if v is not None}
    try:
        image = read_image(args.image)  # before the model: a wrong path costs no load
        predictor = load(args.ckpt, args.device, args.spec, **decode)
        if predictor.format == "onnx":
            raise ValueError(f"{args.ckpt} is an exported ONNX model: the sampling points are read from the "
                             "PyTorch network; give the checkpoint it was exported from")
        convs = adaptive_convs(predictor.net)
        spec = predictor.spec
        selected = keypoint_indices(args.keypoints, spec.keypoint_names, convs[0].groups)
        sampling = image_offset_sampling(predictor.net, image, spec, predictor.decode, args.min_score,
                                         args.max_people)
    except (InputError, *USER_ERRORS) as err:
        raise SystemExit(report_user_error(err)) from None
    disentangled = sampling.points.shape[1] == spec.num_keypoints
    colors = keypoint_colors(spec.num_keypoints, spec.flip_pairs) if disentangled else [(255, 255, 255)]
    labels = spec.keypoint_names if disentangled else ["all keypoints (shared branch)"]
    canvas = draw_sampling_points(image, sampling.centers, sampling.points, colors, selected, labels)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    if not ok:
        raise SystemExit(report_user_error(f"could not encode {out} as PNG"))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, encoded.tobytes())
    except OSError as err:  # a full disk: one line naming the file, no temporary file left
        raise SystemExit(report_user_error(err)) from None
    if not len(sampling):
        print("warning: no person centre scored over the centre threshold (--min-score): the image is drawn "
              "without points", file=sys.stderr)
    layers = sampling.points.shape[2]
    print(f"{len(sampling)} centres x {len(selected or labels)} branches x {layers} adaptive convs x 9 taps -> {out}")
    return {"out": str(out), "centers": len(sampling), "branches": selected or list(range(len(labels))),
            "convs": layers, "center_scores": sampling.center_scores.tolist()}


if __name__ == "__main__":
    main()
