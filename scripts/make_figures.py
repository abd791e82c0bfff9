#!/usr/bin/env python3
"""The README's figures, regenerated from the repository (OpenCV only, no plotting library).

    python scripts/make_figures.py                                   # sample poses (ground truth)
    python scripts/make_figures.py --ckpt runs/demo/checkpoints/best.ckpt --metrics runs/demo/metrics.json
    python scripts/make_figures.py --metrics lightning_logs/version_0/metrics.csv --only curve

Writes to ``--out`` (default ``docs/figures/``):

* ``sample_poses.png``: a real COCO image (``tests/fixtures/coco_minicoco``, 000000444294.jpg,
  CC BY 2.0) with its ground-truth poses (annotations, no model) drawn by :func:`dekr.visualize.draw_poses`;
* ``demo_predictions.png`` (with ``--ckpt``): the model's predictions on synthetic validation
  images (the demo's data), next to the ground truth;
* ``demo_crowd.png`` (with ``--ckpt``): what the demo model finds on the synthetic crowd image of
  ``scripts/make_demo_media.py`` (``demo_media/people.jpg``, people it never saw), drawn as
  ``scripts/infer.py`` draws it;
* ``training_curve.png`` (with ``--metrics``): training loss and validation OKS-AP per epoch, from
  the ``metrics.json`` of ``scripts/train.py`` (its ``history``) or a Lightning ``metrics.csv``;
* ``ap10k_predictions.jpg`` (with ``--ap10k-ckpt``): a model of the AP-10K skeleton (README "Your own
  keypoints") on an AP-10K image (``tests/fixtures/ap10k``, 000000037516.jpg, MIT licence), its
  predictions next to the ground truth, drawn with the spec's skeleton and sides;
* ``offset_sampling.png`` (with ``--offsets-ckpt``): what a demo model's adaptive convolutions learned,
  their sampling points at the person centre of a synthetic validation image (``visualize_offsets.py``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dekr.data.spec import load_spec  # noqa: E402
from dekr.library_warnings import silence_library_noise  # noqa: E402
from dekr.visualize import draw_poses  # noqa: E402

SAMPLE_IMAGE = ROOT / "tests/fixtures/coco_minicoco/images/train2017/000000444294.jpg"
SAMPLE_ANNOTATIONS = ROOT / "tests/fixtures/coco_minicoco/annotations/person_keypoints_train2017.json"
SAMPLE_CREDIT = "COCO 444294, Flickr, CC BY 2.0"
AP10K_IMAGE = ROOT / "tests/fixtures/ap10k/000000037516.jpg"
AP10K_ANNOTATIONS = ROOT / "tests/fixtures/ap10k/test_ap10k.json"
AP10K_CREDIT = "AP-10K 37516, MIT licence"
LOSS_KEYS = ("train/epoch_loss", "train/loss_epoch", "train/loss")
AP_KEYS = ("val/AP",)


def save_png(path: Path, rgb: np.ndarray, max_width: int) -> Path:
    if rgb.shape[1] > max_width:
        scale = max_width / rgb.shape[1]
        rgb = cv2.resize(rgb, (max_width, round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def caption(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    h = out.shape[0]
    cv2.rectangle(out, (0, h - th - base - 6), (tw + 8, h), (0, 0, 0), -1)
    cv2.putText(out, text, (4, h - base - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


# ---------------------------------------------------------------------------------------------- poses
def sample_poses(out: Path, max_width: int = 480) -> Path:
    from dekr.data.dataset import read_image_rgb

    spec = load_spec("coco")
    gt = json.loads(SAMPLE_ANNOTATIONS.read_text())
    image_id = int(SAMPLE_IMAGE.stem)
    anns = [
        a
        for a in gt["annotations"]
        if a["image_id"] == image_id and a["num_keypoints"] > 0 and not a.get("iscrowd", 0)
    ]
    kps = np.stack([np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3) for a in anns])
    kps[..., 2] = (kps[..., 2] > 0).astype(np.float64)
    image = read_image_rgb(SAMPLE_IMAGE)
    drawn = draw_poses(
        image, kps, spec.skeleton, ids=np.arange(len(kps)), flip_pairs=spec.flip_pairs, min_score=0.5
    )
    return save_png(out / "sample_poses.png", caption(drawn, f"ground truth, no model; {SAMPLE_CREDIT}"),
                    max_width)


def crowd_predictions(ckpt: Path, out: Path) -> Path:
    """``ckpt``'s poses on the synthetic crowd image of ``scripts/make_demo_media.py`` (its defaults:
    ``demo_media/people.jpg``), found and drawn as ``scripts/infer.py`` does (``dekr.load``, the
    default pose threshold and drawing options), under a title saying what it shows."""
    from dekr.inference.outputs import DrawOptions
    from dekr.inference.predictor import load

    sys.path.insert(0, str(ROOT / "scripts"))
    import make_demo_media

    image_scene, _ = make_demo_media.demo_scenes(make_demo_media.parse_args([]))
    image, _ = image_scene.frame(0)
    draw = DrawOptions()
    result = load(ckpt, device="cpu")(image)[0]
    drawn = result.draw(**draw.draw_kwargs())
    scores = np.sort(result.scores)
    found = f"{len(scores)} people, scores {scores[0]:.2f}-{scores[-1]:.2f}" if len(scores) else "nobody"
    title = f"demo model ({Path(ckpt).name}) on a synthetic crowd it never saw: {found}"
    figure = cv2.copyMakeBorder(drawn, 26, 0, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    cv2.putText(figure, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return save_png(out / "demo_crowd.png", figure, 1000)


def demo_predictions(ckpt: Path, out: Path, num_images: int = 4, input_size: int | None = None) -> Path:
    """Predictions of ``ckpt`` on the demo's synthetic validation images (top row: predictions,
    bottom row: ground truth)."""
    from dekr.config import load_section
    from dekr.data.synthetic import SyntheticConfig, annotate_scene, render_scene
    from dekr.dataclass_config import as_config
    from dekr.inference.predictor import load

    data = load_section("demo.yaml", "data")
    syn_cfg = as_config(SyntheticConfig, data.get("synthetic"), "demo.yaml: data.synthetic")
    size = input_size or data.get("input_size")
    model = load(ckpt, device="cpu", **({"input_size": size} if size else {}))
    images, truths = [], []
    for index in range(num_images):
        images.append(render_scene(syn_cfg.seed, "val", index, syn_cfg))
        _, anns = annotate_scene(syn_cfg.seed, "val", index, syn_cfg, image_id=index + 1, first_ann_id=1)
        truths.append(_truth_keypoints(anns))
    preds = model.predict_arrays(images)
    top, bottom = [], []
    for image, (kps, scores), truth in zip(images, preds, truths):
        best = scores >= max(0.05, scores.max() * 0.5) if len(scores) else scores.astype(bool)
        top.append(
            draw_poses(
                image,
                kps[best],
                model.spec.skeleton,
                scores=scores[best],
                min_score=0.05,
                flip_pairs=model.spec.flip_pairs,
                thickness=1,
                show_ids=False,
            )
        )
        bottom.append(
            draw_poses(
                image,
                truth,
                model.spec.skeleton,
                min_score=0.5,
                flip_pairs=model.spec.flip_pairs,
                thickness=1,
                show_ids=False,
            )
        )
    h = max(im.shape[0] for im in images)
    pad = lambda im: cv2.copyMakeBorder(
        im, 0, h - im.shape[0], 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)
    )  # noqa: E731
    grid = np.vstack(
        [
            np.hstack([pad(im) for im in top]),
            np.full((4, sum(im.shape[1] + 4 for im in top), 3), 255, np.uint8),
            np.hstack([pad(im) for im in bottom]),
        ]
    )
    grid = cv2.resize(grid, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    grid = cv2.copyMakeBorder(grid, 28, 0, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    cv2.putText(
        grid,
        f"demo model ({Path(ckpt).name}): predictions (top), ground truth (bottom)",
        (6, 19),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.5,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    return save_png(out / "demo_predictions.png", grid, 1400)


def ap10k_predictions(ckpt: Path, out: Path, width: int = 400) -> Path:
    """The best pose ``ckpt`` predicts on the AP-10K image (left) and its ground truth (right),
    drawn with the checkpoint's spec (skeleton, sides from the flip pairs); a small JPEG."""
    from dekr.data.dataset import read_image_rgb
    from dekr.inference.predictor import load

    model = load(ckpt, device="cpu")
    image = read_image_rgb(AP10K_IMAGE)
    gt = json.loads(AP10K_ANNOTATIONS.read_text())
    truth = _truth_keypoints([a for a in gt["annotations"] if a["image_id"] == int(AP10K_IMAGE.stem)])
    kps, scores = model.predict_arrays([image])[0]
    spec, thick = model.spec, max(2, round(max(image.shape[:2]) / 200))
    panels = []
    for poses, text in ((kps[np.argsort(-scores)[:1]], f"predicted ({Path(ckpt).name})"),
                        (truth, f"ground truth; {AP10K_CREDIT}")):
        drawn = draw_poses(image, poses, spec.skeleton, min_score=0.1, flip_pairs=spec.flip_pairs,
                           thickness=thick, show_ids=False)
        height = round(image.shape[0] * width / image.shape[1])
        small = cv2.resize(drawn, (width, height), interpolation=cv2.INTER_AREA)
        panels.append(caption(small, text))
    grid = np.hstack([panels[0], np.full((panels[0].shape[0], 4, 3), 255, np.uint8), panels[1]])
    path = out / "ap10k_predictions.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path


def _truth_keypoints(anns: list[dict]) -> np.ndarray:
    """COCO annotations -> (P, K, 3), labelled keypoints with score 1."""
    kps = np.stack([np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3) for a in anns])
    kps[..., 2] = (kps[..., 2] > 0).astype(np.float64)
    return kps


# ---------------------------------------------------------------------------------------------- curves
def read_history(path: Path) -> list[dict[str, float]]:
    """Per-epoch rows {epoch, key: value} from ``metrics.json`` (``history``) or a Lightning CSV."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        rows = data.get("history", data) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise ValueError(f"{path}: no per-epoch 'history' list")
        return [{k: float(v) for k, v in row.items() if isinstance(v, (int, float))} for row in rows]
    by_epoch: dict[int, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            entry = by_epoch.setdefault(epoch, {"epoch": float(epoch)})
            for key, value in row.items():
                if key != "epoch" and value not in (None, ""):
                    entry[key] = float(value)
    return [by_epoch[e] for e in sorted(by_epoch)]


def _series(rows: list[dict[str, float]], keys: Sequence[str]) -> tuple[str | None, list, list]:
    """(the first of ``keys`` present, epochs counted from 1, values) of the rows holding it: a
    metrics.json history or a Lightning CSV has a validation metric in the epochs that validated."""
    key = next((k for k in keys if any(k in r for r in rows)), None)
    xs, ys = [], []
    if key is None:
        return None, xs, ys
    for row in rows:
        if key in row and math.isfinite(row[key]):
            xs.append(row.get("epoch", len(xs)) + 1)
            ys.append(row[key])
    return key, xs, ys


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int(math.ceil((hi - start) / step)) + 1)]


def line_panel(
    xs: list[float],
    ys: list[float],
    title: str,
    ylabel: str,
    color: tuple[int, int, int],
    size: tuple[int, int] = (460, 320),
    y_from_zero: bool = False,
) -> np.ndarray:
    w, h = size
    panel = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 62, 16, 34, 44
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(panel, title, (left, 22), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    if not xs:
        cv2.putText(panel, "no data", (w // 2 - 30, h // 2), font, 0.5, (120, 120, 120), 1, cv2.LINE_AA)
        return panel
    x_ticks = _nice_ticks(min(xs), max(xs))
    y_lo = 0.0 if y_from_zero else min(ys)
    y_ticks = _nice_ticks(y_lo, max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    px = lambda x: int(round(left + (x - x0) / max(x1 - x0, 1e-12) * (w - left - right)))  # noqa: E731
    py = lambda y: int(round(h - bottom - (y - y0) / max(y1 - y0, 1e-12) * (h - top - bottom)))  # noqa: E731
    for t in y_ticks:
        cv2.line(panel, (left, py(t)), (w - right, py(t)), (230, 230, 230), 1)
        label = f"{t:.3g}"
        (tw, _), _ = cv2.getTextSize(label, font, 0.4, 1)
        cv2.putText(panel, label, (left - tw - 6, py(t) + 4), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    for t in x_ticks:
        label = f"{t:g}"
        (tw, _), _ = cv2.getTextSize(label, font, 0.4, 1)
        cv2.line(panel, (px(t), h - bottom), (px(t), h - bottom + 4), (60, 60, 60), 1)
        cv2.putText(panel, label, (px(t) - tw // 2, h - bottom + 18), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(panel, (left, top), (w - right, h - bottom), (60, 60, 60), 1)
    # x: epochs trained (a metric logged in epoch e, counted from 0 as in the checkpoint names, is at e + 1)
    cv2.putText(panel, "epochs trained", (w // 2 - 50, h - 8), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    rotated = np.full((20, h), 255, np.uint8)
    cv2.putText(rotated, ylabel, (h // 2 - 8 * len(ylabel) // 2, 15), font, 0.45, 0, 1, cv2.LINE_AA)
    label_img = cv2.rotate(rotated, cv2.ROTATE_90_COUNTERCLOCKWISE)
    panel[:, :20] = np.minimum(panel[:, :20], label_img[..., None])
    points = np.array([[px(x), py(y)] for x, y in zip(xs, ys)], np.int32)
    cv2.polylines(panel, [points], False, color, 2, cv2.LINE_AA)
    for p in points:
        cv2.circle(panel, tuple(int(v) for v in p), 3, color, -1, cv2.LINE_AA)
    return panel


def training_curve(metrics: Path, out: Path) -> Path:
    rows = read_history(metrics)
    if not rows:
        raise SystemExit(f"error: {metrics} holds no per-epoch metrics")
    loss_key, lx, ly = _series(rows, LOSS_KEYS)
    ap_key, ax, ay = _series(rows, AP_KEYS)
    if loss_key is None and ap_key is None:
        keys = sorted({k for r in rows for k in r})
        raise SystemExit(
            f"error: {metrics} has neither a training loss ({', '.join(LOSS_KEYS)}) nor val/AP; keys: {keys}"
        )
    left = line_panel(lx, ly, "training loss", loss_key or "loss", (31, 119, 180))
    best = f" (best {max(ay):.3f} after {ax[ay.index(max(ay))]:g} epochs)" if ay else ""
    right = line_panel(ax, ay, f"validation OKS-AP{best}", "AP", (214, 39, 40), y_from_zero=True)
    figure = np.hstack([left, np.full((left.shape[0], 8, 3), 255, np.uint8), right])
    return save_png(out / "training_curve.png", figure, 1000)


def offset_sampling(ckpt: Path, out: Path, keypoints: str = "nose,left_wrist,right_ankle", scene: int = 7,
                    upscale: int = 4) -> Path:
    """The sampling points of a demo model's adaptive convs (``scripts/visualize_offsets.py``) on
    synthetic validation image ``scene`` (a whole person in view), drawn at ``upscale`` times its size
    (the network sees the same 128-pixel input)."""
    import tempfile

    from dekr.config import load_section
    from dekr.data.synthetic import SyntheticConfig, render_scene
    from dekr.dataclass_config import as_config

    sys.path.insert(0, str(ROOT / "scripts"))
    import visualize_offsets

    data = load_section("demo.yaml", "data")
    syn_cfg = as_config(SyntheticConfig, data.get("synthetic"), "demo.yaml: data.synthetic")
    image = render_scene(syn_cfg.seed, "val", scene, syn_cfg)
    image = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    path = out / "offset_sampling.png"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"synthetic_val_{scene}.png"
        cv2.imwrite(str(source), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        visualize_offsets.main(["--ckpt", str(ckpt), "--image", str(source), "--keypoints", keypoints,
                                "--max-people", "1", "--out", str(path)])
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    silence_library_noise()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--ckpt", type=Path,
                        help="demo checkpoint: adds demo_predictions.png and demo_crowd.png")
    parser.add_argument(
        "--metrics", type=Path, help="metrics.json of scripts/train.py or a Lightning metrics.csv"
    )
    parser.add_argument("--ap10k-ckpt", type=Path,
                        help="a model of the AP-10K skeleton: adds ap10k_predictions.jpg "
                             "(README 'Your own keypoints')")
    parser.add_argument("--offsets-ckpt", type=Path,
                        help="a demo checkpoint with adaptive convs: adds offset_sampling.png")
    parser.add_argument("--only", choices=["sample", "predictions", "crowd", "curve", "ap10k", "offsets"],
                        nargs="+")
    args = parser.parse_args(argv)
    wanted = set(args.only or ["sample", "predictions", "crowd", "curve", "ap10k", "offsets"])
    written = []
    if "sample" in wanted:
        written.append(sample_poses(args.out))
    if "predictions" in wanted and args.ckpt:
        written.append(demo_predictions(args.ckpt, args.out))
    if "crowd" in wanted and args.ckpt:
        written.append(crowd_predictions(args.ckpt, args.out))
    if "curve" in wanted and args.metrics:
        if not args.metrics.is_file():
            raise SystemExit(
                f"error: {args.metrics} does not exist (train first: python scripts/train.py "
                "--config demo.yaml)"
            )
        written.append(training_curve(args.metrics, args.out))
    if "ap10k" in wanted and args.ap10k_ckpt:
        written.append(ap10k_predictions(args.ap10k_ckpt, args.out))
    if "offsets" in wanted and args.offsets_ckpt:
        written.append(offset_sampling(args.offsets_ckpt, args.out))
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return written


if __name__ == "__main__":
    main()
