#!/usr/bin/env python3
"""Pose inference on images, folders, videos and cameras: drawings + COCO-format results.

    python scripts/infer.py --ckpt runs/demo/checkpoints/last.ckpt --input photo.jpg
    python scripts/infer.py --ckpt pose_dekr_hrnetw32_coco.pth --input images/ --out outputs/run1
    python scripts/infer.py --ckpt w32.ckpt --input clip.mp4 --device cuda --batch-size 16
    python scripts/infer.py --ckpt w32.ckpt --input frames/ --sequence --fps 25   # a folder of video frames
    python scripts/infer.py --ckpt w32.ckpt --input 0 --max-frames 300            # camera 0
    python scripts/infer.py --ckpt w32.onnx --input photo.jpg                     # an exported ONNX model

``--ckpt`` takes our Lightning checkpoints, official DEKR ``.pth`` files (converted on the fly;
variant recognised from the tensor shapes, ``--config`` overrides) and ONNX files written by
``scripts/export.py``. Outputs in ``--out`` (default ``outputs/infer/<input name>``):

* ``images/<name>.jpg`` (images, folders, ``--sequence``) or ``<name>_poses.mp4`` (video, camera):
  the input with skeletons drawn (a color per limb, or per person with ``--color-by person``),
  keypoints under ``--kpt-thr`` hidden, person / track ids written above each person;
* ``results.json``: COCO keypoint results (``image_id``, ``category_id``, ``keypoints``, ``score``),
  for video one entry per person per frame with ``image_id`` = frame index and ``track_id``;
* ``images.json``: the COCO ``images`` (id, file name or frame index and time, size) and ``categories``
  (keypoint names, 1-based skeleton), so ``COCO(images.json).loadRes(results.json)`` works.

Video, camera and ``--sequence`` frames are tracked (greedy OKS matching) and smoothed (One Euro
filter per track); options in ``--infer-config`` (a YAML with ``decode``, ``smoothing``, ``tracking``,
``draw`` sections, or those under an ``infer:`` key) and ``--smoothing`` / ``--tracking`` /
``--decode`` / ``--draw`` ``key=value`` overrides. Unreadable files in a folder are skipped and
listed; a video or camera that fails mid-way, an error or Ctrl-C keep the results so far.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.data.spec import KeypointSpec  # noqa: E402
from dekr.inference.smoothing import PoseSmoother, SmoothingConfig  # noqa: E402
from dekr.inference.tracking import PoseTracker, TrackingConfig  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}
log = logging.getLogger("infer")
# --infer-config sections, each also given as --<section> key=value overrides (what they set).
CONFIG_SECTIONS = {
    "decode": "DecodeConfig overrides",
    "smoothing": "One Euro options (min_cutoff, beta, d_cutoff, ...)",
    "tracking": "tracking options (oks_threshold, max_age, ...)",
    "draw": "drawing options (kpt_thr, pose_thr, color_by, ...)",
}


class InputError(RuntimeError):
    """An input that cannot be read at all (message for the user)."""


@dataclass
class DrawOptions:
    """Attributes:
    enabled: write drawn images / video at all.
    kpt_thr: keypoints scoring under this are not drawn (nor their limbs).
    pose_thr: poses scoring under this are neither drawn nor written to the results.
    color_by: ``limb`` or ``person``.
    show_ids: write the person / track id above each pose.
    max_poses: draw at most this many poses per image (best first).
    """

    enabled: bool = True
    kpt_thr: float = 0.1
    pose_thr: float = 0.05
    color_by: str = "limb"
    show_ids: bool = True
    max_poses: int | None = None


def parse_kv(items: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: --{what} expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def section_options(
    infer_cfg: dict[str, dict[str, Any]], section: str, overrides: list[str] | None
) -> dict[str, Any]:
    """One ``--infer-config`` section with the ``--<section> key=value`` overrides on top."""
    return {**infer_cfg.get(section, {}), **parse_kv(overrides, section)}


def load_infer_config(path: str | None) -> dict[str, dict[str, Any]]:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: --infer-config {path} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    data = data.get("infer", data)
    unknown = set(data) - set(CONFIG_SECTIONS)
    if unknown:
        raise SystemExit(
            f"error: {path}: unknown section(s) {sorted(unknown)}; known: {', '.join(CONFIG_SECTIONS)}"
        )
    return {k: dict(v or {}) for k, v in data.items()}


# ---------------------------------------------------------------------------------------------- inputs
def classify_input(value: str) -> tuple[str, Any]:
    """-> ("camera", index) | ("folder", Path) | ("image", Path) | ("video", Path)."""
    if value.isdigit() and not Path(value).exists():
        return "camera", int(value)
    path = Path(value)
    if path.is_dir():
        return "folder", path
    if not path.exists():
        raise InputError(
            f"input {value} does not exist (give an image, a folder, a video file or a camera index)"
        )
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image", path
    if suffix in VIDEO_SUFFIXES:
        return "video", path
    # Unknown suffix: an image if OpenCV decodes it, else try it as a video.
    if cv2.imread(str(path)) is not None:
        return "image", path
    return "video", path


def list_folder(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files of a folder (sorted, not recursive) and the other files, with why they are skipped."""
    images, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.is_dir() or path.name.startswith("."):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        else:
            skipped.append((path, "not an image file"))
    return images, skipped


def read_image(path: Path) -> np.ndarray:
    from dekr.data.dataset import DataError, read_image_rgb

    try:
        return read_image_rgb(path)
    except DataError as err:
        raise InputError(str(err)) from None


def open_capture(kind: str, source: Any) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        if kind == "camera":
            raise InputError(
                f"camera {source} could not be opened (no such device, in use by another program, or no "
                "permission; on Linux `ls /dev/video*` lists the cameras)"
            )
        raise InputError(f"cannot open video {source}: unreadable, truncated or in an unsupported format")
    return capture


# ---------------------------------------------------------------------------------------------- outputs
class Results:
    """COCO results and images collected as the run goes; ``write()`` is safe to call at any time."""

    def __init__(self, out_dir: Path, spec: KeypointSpec) -> None:
        self.out_dir = out_dir
        self.spec = spec
        self.results: list[dict[str, Any]] = []
        self.images: list[dict[str, Any]] = []

    def add(
        self,
        image: dict[str, Any],
        keypoints: np.ndarray,
        scores: np.ndarray,
        track_ids: np.ndarray | None = None,
    ) -> None:
        self.images.append(image)
        for p, (kp, score) in enumerate(zip(keypoints, scores)):
            entry = {
                "image_id": image["id"],
                "category_id": 1,
                "keypoints": [round(float(v), 2) for v in np.asarray(kp, dtype=np.float64).reshape(-1)],
                "score": round(float(score), 5),
            }
            if track_ids is not None:
                entry["track_id"] = int(track_ids[p])
            self.results.append(entry)

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        category = {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(self.spec.keypoint_names),
            "skeleton": [[a + 1, b + 1] for a, b in self.spec.skeleton],
        }
        _atomic_json(self.out_dir / "results.json", self.results)
        _atomic_json(self.out_dir / "images.json", {"images": self.images, "categories": [category]})


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def image_ids(paths: list[Path]) -> list[int]:
    """COCO-style numeric file names (000000000785.jpg -> 785) when all are numeric and distinct,
    else 1, 2, ... in order."""
    stems = [p.stem for p in paths]
    if stems and all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(paths) + 1))


# ---------------------------------------------------------------------------------------------- model
class Predictor:
    """Network + decoding: list of RGB images -> per image (keypoints (P, K, 3), scores (P,)) numpy."""

    def __init__(self, net: Any, spec: KeypointSpec, decode_cfg: Any, rescore_net: Any = None) -> None:
        self.net, self.spec, self.cfg, self.rescore_net = net, spec, decode_cfg, rescore_net

    def __call__(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        from dekr.inference import predict_poses

        preds = predict_poses(self.net, images, self.spec, self.cfg, rescore_net=self.rescore_net)
        return [(p["keypoints"].detach().cpu().numpy(), p["scores"].detach().cpu().numpy()) for p in preds]


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name} but CUDA is not available here; use --device cpu")
    return name


def build_predictor(args: argparse.Namespace, infer_cfg: dict[str, dict[str, Any]]) -> Predictor:
    from dekr.checkpoint import ModelLoadError, load_checkpoint
    from dekr.inference import DecodeConfig

    device = resolve_device(args.device)
    try:
        model = load_checkpoint(args.ckpt, spec=args.spec)
    except (ModelLoadError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    spec, decode = model.spec, dict(model.decode)
    if model.format == "onnx":
        if device.startswith("cuda"):  # the same file on onnxruntime's CUDA provider
            from dekr.export import OnnxPoseNet

            model.net = OnnxPoseNet(args.ckpt, ["CUDAExecutionProvider", "CPUExecutionProvider"])
        net: Any = model.net
    else:
        net = model.net.to(device)
    print(f"model: {args.ckpt} ({model.format} checkpoint; spec {spec.name}, {spec.num_keypoints} keypoints) "
          f"on {device}")
    decode.update(infer_cfg.get("decode", {}))
    if args.input_size:
        decode["input_size"] = args.input_size
    if args.flip is not None:
        decode["flip_test"] = args.flip
    if args.scales:
        decode["scales"] = tuple(args.scales)
    decode.update(parse_kv(args.decode, "decode"))
    decode["batch_size"] = args.batch_size
    try:
        cfg = DecodeConfig.for_dataset(spec, **decode)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    # The rescoring net a checkpoint carries (MMPose, converted zoo entries) is used as its authors
    # did, unless --decode rescore=FILE names another one.
    carried = model.rescore if not cfg.rescore else None
    if carried is not None:
        print("rescoring: the checkpoint's rescoring net")
    return Predictor(net, spec, cfg, carried)


# ---------------------------------------------------------------------------------------------- running
class Progress:
    def __init__(self, total: int | None, desc: str, quiet: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            desc=desc,
            unit="img" if desc != "video" else "frame",
            disable=quiet,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def keep_poses(kps: np.ndarray, scores: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    keep = scores >= thr
    return kps[keep], scores[keep]


def draw(
    image: np.ndarray,
    kps: np.ndarray,
    scores: np.ndarray,
    ids: np.ndarray | None,
    spec: KeypointSpec,
    opts: DrawOptions,
    caption: str | None = None,
) -> np.ndarray:
    from dekr.visualize import draw_caption, draw_poses

    canvas = draw_poses(
        image,
        kps,
        spec.skeleton,
        scores=scores,
        ids=ids,
        min_score=opts.kpt_thr,
        color_by=opts.color_by,
        keypoint_names=spec.keypoint_names,  # type: ignore[arg-type]
        show_ids=opts.show_ids,
        max_poses=opts.max_poses,
    )
    return draw_caption(canvas, caption) if caption else canvas


def run_images(
    paths: list[Path],
    predictor: Predictor,
    results: Results,
    opts: DrawOptions,
    out_dir: Path,
    skipped: list[tuple[Path, str]],
    quiet: bool,
    video: "VideoState | None" = None,
) -> int:
    """Images (or a ``--sequence`` of frames) in batches; unreadable ones go to ``skipped``."""
    ids = image_ids(paths)
    done = 0
    progress = Progress(len(paths), "images", quiet or len(paths) < 2)
    vis_dir = out_dir / "images"
    try:
        for start in range(0, len(paths), predictor.cfg.batch_size):
            chunk = []
            for path, image_id in zip(
                paths[start : start + predictor.cfg.batch_size], ids[start : start + predictor.cfg.batch_size]
            ):
                try:
                    chunk.append((path, image_id, read_image(path)))
                except InputError as err:
                    skipped.append((path, str(err)))
                    progress.update()
            if not chunk:
                continue
            preds = predictor([im for _, _, im in chunk])
            for (path, image_id, image), (kps, scores) in zip(chunk, preds):
                kps, scores = keep_poses(kps, scores, opts.pose_thr)
                track_ids = None
                if video is not None:
                    kps, track_ids = video.step(kps, scores, video.frame_time())
                h, w = image.shape[:2]
                results.add(
                    {"id": image_id, "file_name": path.name, "width": w, "height": h}, kps, scores, track_ids
                )
                if opts.enabled:
                    vis_dir.mkdir(parents=True, exist_ok=True)
                    canvas = draw(image, kps, scores, track_ids, predictor.spec, opts)
                    cv2.imwrite(str(vis_dir / f"{path.stem}.jpg"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
                done += 1
                progress.update()
    finally:
        progress.close()
    return done


class VideoState:
    """Tracking + smoothing over consecutive frames."""

    def __init__(
        self, spec: KeypointSpec, tracking: TrackingConfig, smoothing: SmoothingConfig, fps: float
    ) -> None:
        self.tracker = PoseTracker(spec.sigmas, tracking)
        self.smoother = PoseSmoother(smoothing)
        self.fps = fps
        self.frame = 0

    def frame_time(self) -> float:
        return self.frame / self.fps

    def step(self, kps: np.ndarray, scores: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        ids = self.tracker.update(kps, scores)
        smoothed = self.smoother(kps, ids, t).astype(np.float32) if len(kps) else kps
        self.frame += 1
        return smoothed, ids


def frames_of(capture: cv2.VideoCapture, max_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
    index = 0
    while max_frames is None or index < max_frames:
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        index += 1


def run_stream(
    kind: str,
    source: Any,
    predictor: Predictor,
    results: Results,
    opts: DrawOptions,
    out_dir: Path,
    video: VideoState,
    args: argparse.Namespace,
    warnings_out: list[str],
) -> int:
    """A video file or a camera: batches of frames -> poses -> tracking + smoothing -> drawn video."""
    capture = open_capture(kind, source)
    fps = args.fps or capture.get(cv2.CAP_PROP_FPS)
    if not fps or not math.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 30.0
    video.fps = fps
    expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "video" else -1
    total = (
        min(expected, args.max_frames)
        if expected > 0 and args.max_frames
        else (expected if expected > 0 else args.max_frames)
    )
    name = f"camera{source}" if kind == "camera" else Path(source).stem
    writer: cv2.VideoWriter | None = None
    video_path = out_dir / f"{name}_poses.mp4"
    progress = Progress(total, "video", args.quiet)
    batch_size = 1 if kind == "camera" else predictor.cfg.batch_size  # a camera wants latency, not throughput
    done = 0
    start_time = time.monotonic()
    frames = frames_of(capture, args.max_frames)
    try:
        while True:
            chunk = []
            for index, frame in frames:
                t = index / fps if kind == "video" else time.monotonic() - start_time
                chunk.append((index, t, frame))
                if len(chunk) >= batch_size:
                    break
            if not chunk:
                break
            preds = predictor([f for _, _, f in chunk])
            for (index, t, frame), (kps, scores) in zip(chunk, preds):
                kps, scores = keep_poses(kps, scores, opts.pose_thr)
                kps, ids = video.step(kps, scores, t)
                h, w = frame.shape[:2]
                results.add(
                    {
                        "id": index,
                        "file_name": f"{name}#{index:06d}",
                        "frame": index,
                        "time": round(t, 4),
                        "width": w,
                        "height": h,
                    },
                    kps,
                    scores,
                    ids,
                )
                if opts.enabled:
                    if writer is None:
                        out_dir.mkdir(parents=True, exist_ok=True)
                        writer = cv2.VideoWriter(
                            str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h)
                        )
                        if not writer.isOpened():
                            warnings_out.append(
                                f"could not open a video writer for {video_path}; no video written"
                            )
                            opts.enabled = False
                    if opts.enabled:
                        canvas = draw(frame, kps, scores, ids, predictor.spec, opts, f"frame {index}")
                        writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
                done += 1
                progress.update()
    finally:
        progress.close()
        capture.release()
        if writer is not None:
            writer.release()
    if kind == "video":
        if done == 0:
            raise InputError(
                f"video {source} opened but no frame could be decoded (corrupt or unsupported codec)"
            )
        wanted = min(expected, args.max_frames) if args.max_frames else expected
        if expected > 0 and done < wanted:
            warnings_out.append(
                f"video {source} ended after {done} of {wanted} frames (truncated or corrupt?); "
                "the frames read were processed"
            )
    elif done == 0:
        raise InputError(f"camera {source} opened but delivered no frame")
    return done


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from dekr.dataclass_config import dataclass_from_dict

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ckpt", required=True,
        help="checkpoint (ours .ckpt; official, MMPose or SuperGradients .pth; exported .onnx) or model-zoo name"
    )
    parser.add_argument(
        "--input", required=True, help="image, folder of images, video file, or camera index (0, 1..)"
    )
    parser.add_argument("--out", help="output folder (default outputs/infer/<input name>)")
    parser.add_argument("--spec", help="keypoint spec you expect (error if the checkpoint is for another)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch-size", type=int, default=8, help="images / frames per forward pass")
    parser.add_argument("--input-size", type=int, help="test input size (short side, multiple of 64)")
    flip = parser.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None, help="flip test (official)")
    flip.add_argument("--no-flip", dest="flip", action="store_false")
    parser.add_argument("--scales", type=float, nargs="+", help="test scales, e.g. 2 1 0.5")
    parser.add_argument("--infer-config", help="YAML with decode / smoothing / tracking / draw sections")
    for section, what in CONFIG_SECTIONS.items():
        parser.add_argument(f"--{section}", nargs="*", help=f"{what} key=value (over --infer-config)")
    parser.add_argument("--kpt-thr", type=float, help="keypoint score threshold for drawing")
    parser.add_argument("--pose-thr", type=float, help="pose score threshold (drawing and results)")
    parser.add_argument(
        "--color-by", choices=["limb", "person"], help="skeleton colors (default: limb; video: person)"
    )
    parser.add_argument("--no-draw", action="store_true", help="results json only")
    parser.add_argument("--no-smooth", action="store_true", help="video: no temporal smoothing")
    parser.add_argument(
        "--no-track", action="store_true", help="video: no identity tracking (implies --no-smooth)"
    )
    parser.add_argument(
        "--sequence", action="store_true", help="a folder holds consecutive video frames: track, smooth"
    )
    parser.add_argument("--fps", type=float, help="frame rate for smoothing (default: the video's, else 30)")
    parser.add_argument("--max-frames", type=int, help="stop a video / camera after this many frames")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    try:
        kind, source = classify_input(args.input)
    except InputError as err:
        raise SystemExit(f"error: {err}") from None
    infer_cfg = load_infer_config(args.infer_config)
    draw_opts = section_options(infer_cfg, "draw", args.draw)
    for key, value in (("kpt_thr", args.kpt_thr), ("pose_thr", args.pose_thr), ("color_by", args.color_by)):
        if value is not None:
            draw_opts[key] = value
    streaming = kind in ("video", "camera") or (kind == "folder" and args.sequence)
    draw_opts.setdefault("color_by", "person" if streaming else "limb")
    try:
        opts = dataclass_from_dict(DrawOptions, draw_opts, "draw")
        smoothing = SmoothingConfig.from_dict(section_options(infer_cfg, "smoothing", args.smoothing))
        tracking = TrackingConfig.from_dict(section_options(infer_cfg, "tracking", args.tracking))
    except (ValueError, TypeError) as err:
        raise SystemExit(f"error: {err}") from None
    if args.no_draw:
        opts.enabled = False
    if args.no_track:
        tracking.enabled = False
    if args.no_smooth or not tracking.enabled:
        smoothing.enabled = False

    name = f"camera{source}" if kind == "camera" else Path(source).stem
    out_dir = Path(args.out or Path("outputs") / "infer" / name)
    predictor = build_predictor(args, infer_cfg)
    results = Results(out_dir, predictor.spec)
    skipped: list[tuple[Path, str]] = []
    warnings_out: list[str] = []
    video = VideoState(predictor.spec, tracking, smoothing, args.fps or 30.0) if streaming else None
    done, error = 0, None
    started = time.perf_counter()
    try:
        if kind in ("image", "folder"):
            paths, skipped = ([source], []) if kind == "image" else list_folder(source)
            if kind == "folder" and not paths:
                raise InputError(f"folder {source} holds no image files ({len(skipped)} other files)")
            done = run_images(paths, predictor, results, opts, out_dir, skipped, args.quiet, video)
            if done == 0:
                raise InputError(f"no readable image in {source}")
        else:
            assert video is not None
            done = run_stream(kind, source, predictor, results, opts, out_dir, video, args, warnings_out)
    except InputError as err:
        error = str(err)
    except KeyboardInterrupt:
        error = "interrupted"
    except Exception as err:  # keep what was done, then report
        error = f"{type(err).__name__}: {err}"
        log.exception("inference failed")
    finally:
        done = len(results.images)  # also right when a run stopped half-way
        if results.images or error is None:
            results.write()
    elapsed = time.perf_counter() - started

    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    for line in warnings_out:
        print(f"warning: {line}", file=sys.stderr)
    summary = {
        "input": str(args.input),
        "kind": kind,
        "processed": done,
        "poses": len(results.results),
        "skipped": [str(p) for p, _ in skipped],
        "warnings": warnings_out,
        "out": str(out_dir),
        "seconds": round(elapsed, 2),
        "error": error,
        "smoothing": asdict(smoothing) if streaming else None,
        "tracking": asdict(tracking) if streaming else None,
    }
    if results.images:
        fps = done / elapsed if elapsed > 0 else float("nan")
        print(
            f"{done} {'frames' if streaming else 'images'} ({fps:.1f}/s), {len(results.results)} poses -> "
            f"{out_dir / 'results.json'}" + (f"; {len(skipped)} skipped" if skipped else "")
        )
    if error is not None:
        kept = f" ({done} processed, results kept in {out_dir})" if results.images else ""
        raise SystemExit(f"error: {error}{kept}")
    return summary


if __name__ == "__main__":
    main()
