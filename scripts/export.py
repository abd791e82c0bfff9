#!/usr/bin/env python3
"""Export a DEKR model to ONNX (and/or TorchScript) and check it against PyTorch.

    python scripts/export.py --ckpt runs/demo/checkpoints/last.ckpt --format onnx
    python scripts/export.py --ckpt pose_dekr_hrnetw32_coco.pth --format onnx torchscript --input-size 512 512
    python scripts/export.py --ckpt pose_dekr_hrnetw48_crowdpose.pth --spec crowdpose --out w48.onnx

``--ckpt`` takes our Lightning checkpoints and official, MMPose or SuperGradients ``.pth`` files
(converted on the fly: the variant is recognised from the tensor shapes; ``--spec`` states the
keypoint set you expect, and names it for a file whose K is neither 17 nor 14). The ONNX model has
dynamic batch, height and width (multiples of 32) unless ``--static``; the keypoint spec and the
checkpoint's decode options are stored in its metadata. After export the model is run with
onnxruntime at the export size and at a second size, and compared with PyTorch (relative error
printed; the script fails above ``--tolerance``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.checkpoint import ModelLoadError, load_checkpoint  # noqa: E402
from dekr.dataclass_config import ConfigError  # noqa: E402
from dekr.export import OnnxPoseNet, export_onnx, export_torchscript, spec_metadata, verify_export  # noqa: E402
from dekr.inference.config import resolve_decode  # noqa: E402
from dekr.preflight import check_output_file  # noqa: E402


def check_shapes(height: int, width: int, batch: int, dynamic: bool) -> list[tuple[int, int, int, int]]:
    shapes = [(batch, 3, height, width)]
    if dynamic:  # a second batch size and input size proves the dynamic axes
        shapes.append((batch + 1, 3, height + 64, width + 32))
    return shapes


def output_path(out: str | None, ckpt: str, fmt: str, formats: int) -> Path:
    """Where one format is written: ``--out`` as given for a single format, else with the format's suffix
    (``--out`` or the checkpoint's name)."""
    suffix = ".onnx" if fmt == "onnx" else ".torchscript.pt"
    if out and formats == 1:
        return Path(out)
    return Path(out).with_suffix(suffix) if out else Path(ckpt).with_suffix(suffix)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True,
                        help="checkpoint (ours .ckpt; official, MMPose or SuperGradients .pth) or model-zoo name")
    parser.add_argument("--spec", help="expected keypoint spec (error if the checkpoint has another)")
    parser.add_argument("--format", nargs="+", choices=["onnx", "torchscript"], default=["onnx"])
    parser.add_argument(
        "--out",
        help="output path (default: the checkpoint's name with .onnx / .torchscript.pt); "
        "with several formats, the suffix is replaced per format",
    )
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

    for fmt in args.format:  # the outputs can be written: checked before the export, not after it
        problems = check_output_file(output_path(args.out, args.ckpt, fmt, len(args.format)), "--out")
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
    failed = False
    for fmt in args.format:
        out = output_path(args.out, args.ckpt, fmt, len(args.format))
        if fmt == "onnx":
            export_onnx(
                model.net,
                out,
                (height, width),
                args.batch,
                dynamic=not args.static,
                opset=args.opset,
                metadata=meta,
            )
            runner = OnnxPoseNet(out) if args.check else None
        else:
            import torch

            export_torchscript(model.net, out, (height, width), extra_files=meta)
            runner = torch.jit.load(str(out)) if args.check else None
        entry: dict = {"path": str(out), "size_mb": round(out.stat().st_size / 2**20, 1)}
        print(
            f"{fmt}: wrote {out} ({entry['size_mb']} MB; spec {model.spec.name}, "
            f"{model.spec.num_keypoints} keypoints"
            f"{'' if args.static else '; dynamic batch/height/width'})"
        )
        if runner is not None:
            entry["check"] = verify_export(
                model.net, runner, check_shapes(height, width, args.batch, dynamic=not args.static)
            )
            for row in entry["check"]:
                ok = max(row["heatmaps"], row["offsets"]) < args.tolerance
                failed |= not ok
                print(
                    f"  check {row['shape']}: relative error heatmaps {row['heatmaps']:.2e}, "
                    f"offsets {row['offsets']:.2e} {'ok' if ok else f'ABOVE {args.tolerance:g}'}"
                )
        report["exports"][fmt] = entry
    if failed:
        print(json.dumps(report, indent=2, default=str), file=sys.stderr)
        raise SystemExit("error: the exported model differs from PyTorch beyond --tolerance")
    return report


if __name__ == "__main__":
    main()
