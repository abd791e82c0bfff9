#!/usr/bin/env python3
"""Export a DEKR model to ONNX and check it against PyTorch.

    python scripts/export.py --ckpt runs/demo/checkpoints/best.ckpt        # runs/demo/checkpoints/best.onnx
    python scripts/export.py --ckpt pose_dekr_hrnetw32_coco.pth --input-size 512 512
    python scripts/export.py --ckpt pose_dekr_hrnetw48_crowdpose.pth --spec crowdpose --out w48.onnx

``--ckpt`` takes our Lightning checkpoints and official, MMPose or SuperGradients ``.pth`` files
(converted on the fly: the variant is recognised from the tensor shapes; ``--spec`` states the
keypoint set you expect, and names it for a file whose K is neither 17 nor 14). The ONNX model has
dynamic batch, height and width (multiples of 32) unless ``--static``; the keypoint spec and the
checkpoint's decode options are stored in its metadata. After export the model is run with
onnxruntime at the export size and at a second size, and compared with PyTorch (relative error
printed; the script fails above ``--tolerance``). ``dekr.load`` and ``scripts/infer.py`` take the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.checkpoint import ModelLoadError, load_checkpoint  # noqa: E402
from dekr.cpu_threads import apply_thread_policy  # noqa: E402
from dekr.dataclass_config import ConfigError  # noqa: E402
from dekr.export import OnnxPoseNet, export_onnx, spec_metadata, verify_export  # noqa: E402
from dekr.inference.config import resolve_decode  # noqa: E402
from dekr.library_warnings import silence_library_noise  # noqa: E402
from dekr.preflight import check_output_file  # noqa: E402

# Torch's CPU threads (dekr.cpu_threads): passive OpenMP waiting, set when dekr was imported above before
# torch, and one thread per idle core.
apply_thread_policy()


def check_shapes(height: int, width: int, batch: int, dynamic: bool) -> list[tuple[int, int, int, int]]:
    shapes = [(batch, 3, height, width)]
    if dynamic:  # a second batch size and input size proves the dynamic axes
        shapes.append((batch + 1, 3, height + 64, width + 32))
    return shapes


def output_path(out: str | None, ckpt: str) -> Path:
    """Where the model is written: ``--out``, else beside the checkpoint with the suffix ``.onnx``."""
    return Path(out) if out else Path(ckpt).with_suffix(".onnx")


def main(argv: list[str] | None = None) -> dict:
    silence_library_noise()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True,
                        help="checkpoint (ours .ckpt; official, MMPose or SuperGradients .pth) or model-zoo name")
    parser.add_argument("--spec", help="expected keypoint spec (error if the checkpoint has another)")
    parser.add_argument("--out", help="output path (default: the checkpoint's name with .onnx)")
    parser.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="example input size, multiples of 32 (default: the model's decode input size, square)",
    )
    parser.add_argument("--batch", type=int, default=1, help="example batch size")
    parser.add_argument("--static", action="store_true", help="fixed batch and size instead of dynamic axes")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument(
        "--no-check", dest="check", action="store_false", help="skip the onnxruntime comparison"
    )
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="max relative error accepted by the check"
    )
    args = parser.parse_args(argv)

    out = output_path(args.out, args.ckpt)
    problems = check_output_file(out, "--out")  # checked before the export, not after it
    if problems:
        raise SystemExit(f"error: {problems[0]}")
    try:
        model = load_checkpoint(args.ckpt, spec=args.spec)
        size = resolve_decode(model.spec, model.decode_layer).input_size
    except (ModelLoadError, ConfigError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    height, width = args.input_size or (size, size)
    if height % 32 or width % 32:
        raise SystemExit(f"error: --input-size must be multiples of 32, got {height} {width}")
    ckpt = Path(args.ckpt)
    report: dict = {"checkpoint": str(ckpt), "source": model.format, "spec": model.spec.name, "exports": {}}
    meta = spec_metadata(model.spec, model.decode, source=model.format, checkpoint=ckpt.name)
    export_onnx(model.net, out, (height, width), args.batch, dynamic=not args.static, opset=args.opset,
                metadata=meta)
    entry: dict = {"path": str(out), "size_mb": round(out.stat().st_size / 2**20, 1)}
    print(f"onnx: wrote {out} ({entry['size_mb']} MB; spec {model.spec.name}, "
          f"{model.spec.num_keypoints} keypoints{'' if args.static else '; dynamic batch/height/width'})")
    failed = False
    if args.check:
        shapes = check_shapes(height, width, args.batch, dynamic=not args.static)
        entry["check"] = verify_export(model.net, OnnxPoseNet(out), shapes)
        for row in entry["check"]:
            ok = max(row["heatmaps"], row["offsets"]) < args.tolerance
            failed |= not ok
            print(f"  check {row['shape']}: relative error heatmaps {row['heatmaps']:.2e}, "
                  f"offsets {row['offsets']:.2e} {'ok' if ok else f'ABOVE {args.tolerance:g}'}")
    report["exports"]["onnx"] = entry
    if failed:
        print(json.dumps(report, indent=2, default=str), file=sys.stderr)
        raise SystemExit("error: the exported model differs from PyTorch beyond --tolerance")
    return report


if __name__ == "__main__":
    main()
