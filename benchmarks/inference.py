"""Inference and evaluation timings: per-image preprocess / network / decode / NMS, and OKS-AP backends.

    python benchmarks/inference.py                       # CPU, W32 at 512, flip test, 4 fixture images
    python benchmarks/inference.py --device cuda --bf16 --batch-size 32 --repeat 8

Prints three tables:
1. end-to-end ``predict_poses`` time per image split into stages (random-init W32: the network
   cost is real, the decoded poses are not);
2. decoding + pose NMS alone on real network outputs with exactly ``--candidates`` proposals per
   image (the center threshold is lowered so that top-k is always full), batched vs one image,
   without and with ``match_heatmap`` (absorb + Gaussian-fit refinement of every keypoint);
3. ``OKSAP.compute`` on the 2000-image CrowdPose val annotations with noisy predictions, per backend.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from timing import ms_per_call

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dekr.data.spec import load_spec  # noqa: E402
from dekr.inference import DecodeConfig, Timer, decode_batch, predict_poses  # noqa: E402
from dekr.inference.predict import run_net  # noqa: E402
from dekr.inference.preprocess import resize_image, resize_info, to_input_tensor  # noqa: E402
from dekr.metrics.oks_ap import BACKENDS, OKSAP  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"


def load_images(n: int) -> list[np.ndarray]:
    paths = sorted((FIXTURES / "coco").glob("*.jpg")) + sorted((FIXTURES / "coco_minicoco" / "images" / "val2017")
                                                              .glob("*.jpg"))
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths[:n]]
    return images


def bench_end_to_end(args, spec, device) -> None:
    from dekr.models.dekr import DEKRNet, DEKRNetConfig

    net = DEKRNet(DEKRNetConfig(backbone=args.backbone, num_keypoints=spec.num_keypoints)).eval().to(device)
    images = load_images(args.images)
    cfg = DecodeConfig.for_dataset(spec, input_size=args.input_size, flip_test=not args.no_flip,
                                   batch_size=args.batch_size, pad_batch=args.pad_batch,
                                   autocast_dtype="bfloat16" if args.bf16 else None)
    predict_poses(net, images[: max(1, min(2, len(images)))], spec, cfg)  # warm-up
    timer = Timer(torch.device(device))
    total = args.repeat * ms_per_call(lambda: predict_poses(net, images, spec, cfg, timer=timer), device,
                                      args.repeat, warmup=0) / 1000
    n = len(images) * args.repeat
    print(f"\n## predict_poses, {args.backbone} at {args.input_size}, flip={cfg.flip_test}, scales={cfg.scales}, "
          f"device={device}, bf16={args.bf16}, batch={args.batch_size}, pad_batch={args.pad_batch}, {len(images)} images"
          f" x {args.repeat}")
    print("| stage | ms / image |\n|---|---|")
    for stage in ("preprocess", "network", "decode", "nms"):
        print(f"| {stage} | {1000 * timer.totals[stage] / n:.2f} |")
    print(f"| total (wall) | {1000 * total / n:.2f} |")
    print(f"throughput: {n / total:.1f} images/s")


def bench_decode(args, spec, device) -> None:
    from dekr.models.dekr import DEKRNet, DEKRNetConfig

    torch.manual_seed(0)
    net = DEKRNet(DEKRNetConfig(backbone=args.backbone, num_keypoints=spec.num_keypoints)).eval().to(device)
    image = load_images(1)[0]
    cfg = DecodeConfig.for_dataset(spec, input_size=args.input_size, flip_test=True, keypoint_threshold=-1.0,
                                   max_num_people=args.candidates)
    info = resize_info(image.shape[0], image.shape[1], cfg.input_size)
    batch = to_input_tensor([resize_image(image, info)], device)
    outputs = run_net(net, batch, cfg)
    # match_heatmap: absorb only, then absorb + Gaussian-fit refinement of every keypoint (threshold off:
    # the worst case, candidates x K windows per image); fewer repeats, these rows are slow on CPU
    match_cfg = cfg.replace(match_heatmap=True, adjust_threshold=-1.0)
    absorb_cfg = match_cfg.replace(adjust_kernel=0)
    print(f"\n## decoding + pose NMS, {args.candidates} candidate centers per image, flip outputs, "
          f"{info.base_size[0]}x{info.base_size[1]} input, device={device}")
    print("| match_heatmap | images per call | decode ms / image | NMS ms / image | total ms / image |\n"
          "|---|---|---|---|---|")
    for name, c in (("off", cfg), ("on, absorb only (adjust_kernel=0)", absorb_cfg),
                    ("on, absorb + Gaussian fit of all keypoints", match_cfg)):
        for n in (1, 8):
            outs = [tuple(t.expand(n, *t.shape[1:]).contiguous() for t in outputs)]
            timer = Timer(torch.device(device))
            decode_batch(outs, [info] * n, spec, c, info.base_size)  # warm-up
            reps = max(3, args.decode_repeat // n) if c is cfg else max(2, args.decode_repeat // (8 * n))
            for _ in range(reps):
                decode_batch(outs, [info] * n, spec, c, info.base_size, timer=timer)
            d, s = 1000 * timer.totals["decode"] / (reps * n), 1000 * timer.totals["nms"] / (reps * n)
            print(f"| {name} | {n} | {d:.2f} | {s:.2f} | {d + s:.2f} |")


def bench_oksap(args) -> None:
    path = FIXTURES / "crowdpose_val_gt" / "crowdpose_val.json"
    gt = json.loads(path.read_text())
    rng = np.random.default_rng(0)
    results = []
    for ann in gt["annotations"]:
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        if (kp[:, 2] > 0).sum() == 0:
            continue
        kp[:, :2] += rng.normal(0, 0.03 * np.sqrt(max(ann["bbox"][2] * ann["bbox"][3], 1.0)), (len(kp), 2))
        results.append({"image_id": ann["image_id"], "keypoints": kp.reshape(-1).tolist(),
                        "score": float(rng.uniform(0.2, 1))})
    metric = OKSAP(gt, "crowdpose")
    metric.update_from_results(results, image_ids=[img["id"] for img in gt["images"]])
    print(f"\n## OKSAP.compute on CrowdPose val ({len(gt['images'])} images, {len(results)} poses; "
          "AP + AP easy/medium/hard = 4 evaluations)")
    print("| backend | seconds | AP |\n|---|---|---|")
    times = {}
    for backend in BACKENDS:
        metric.compute_with(backend)  # builds the ground-truth index once (cached)
        start = time.perf_counter()
        out = metric.compute_with(backend)
        times[backend] = time.perf_counter() - start
        print(f"| {backend} | {times[backend]:.2f} | {out['AP']:.4f} |")
    print(f"speed-up: {times['pycocotools'] / times['faster_coco_eval']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--spec", default="coco")
    parser.add_argument("--backbone", default="hrnet_w32")
    parser.add_argument("--input-size", type=int, default=512)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pad-batch", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--no-flip", action="store_true")
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--decode-repeat", type=int, default=40)
    parser.add_argument("--skip", nargs="*", default=[], choices=["end-to-end", "decode", "oksap"])
    args = parser.parse_args()
    spec = load_spec(args.spec)
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    if "end-to-end" not in args.skip:
        bench_end_to_end(args, spec, args.device)
    if "decode" not in args.skip:
        bench_decode(args, spec, args.device)
    if "oksap" not in args.skip:
        bench_oksap(args)


if __name__ == "__main__":
    main()
