"""Training-sample throughput of the data pipeline on one CPU core, with the time of each stage.

Measures the full training sample (decode, ignore mask, augment, normalise, targets) on a COCO-layout
folder (default: shared/data/coco_minicoco train2017) at input 512, single-threaded (OpenCV and
torch limited to one thread, as in one DataLoader worker). Also times the GPU-target mode's worker
part (decode + warp only) and, if a GPU is present, the batched target build on it.

    python benchmarks/data_pipeline.py [--root ../shared/data/coco_minicoco] [--size 512] [--repeats 10]

Reference: the official DEKR pipeline on the same set takes 33 ms/sample (30 samples/s) per core.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import cv2
import torch
from timing import ms_per_call

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.data.dataset import CocoKeypointDataset, read_image_rgb  # noqa: E402
from dekr.data.spec import load_spec  # noqa: E402
from dekr.data.targets import build_targets, build_targets_torch  # noqa: E402
from dekr.data.normalize import normalize_image  # noqa: E402

OFFICIAL_MS = 33.0


def default_root() -> Path:
    here = Path(__file__).resolve().parents[1]
    for candidate in (here.parent / "shared/data/coco_minicoco", here / "tests/fixtures/coco_minicoco"):
        if candidate.is_dir():
            return candidate
    return here / "tests/fixtures/coco_minicoco"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=default_root())
    parser.add_argument("--split", default="train2017")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10, help="passes over the images")
    parser.add_argument("--spec", default="coco")
    args = parser.parse_args()

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    ann = args.root / "annotations" / f"person_keypoints_{args.split}.json"
    ds = CocoKeypointDataset(ann, args.root / "images" / args.split, load_spec(args.spec), train=True,
                             input_size=args.size)
    ds.reseed(0)
    r = ds.output_size
    stages = {"decode": 0.0, "ignore mask": 0.0, "augment (warp)": 0.0, "normalise": 0.0, "targets": 0.0,
              "to tensors": 0.0}
    n = 0
    for i in range(len(ds)):  # warm-up (file cache, lazy imports)
        ds[i]
    for _ in range(args.repeats):
        for i in range(len(ds)):
            t0 = time.perf_counter()
            image = read_image_rgb(ds.image_path(i))
            t1 = time.perf_counter()
            joints, area = ds.persons(i)
            mask = ds.keep_mask(i)
            t2 = time.perf_counter()
            out = ds.transform(image, mask, joints, rng=ds.sample_rng(i))
            t3 = time.perf_counter()
            normalised = normalize_image(out["image"])
            t4 = time.perf_counter()
            targets = build_targets(out["keypoints"], area * out["scale_factor"], out["mask"], r, ds.target_config)
            t5 = time.perf_counter()
            sample = {"image": torch.from_numpy(normalised), **{k: torch.from_numpy(v) for k, v in targets.items()}}
            t6 = time.perf_counter()
            for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                stages[key] += dt
            n += 1
            del sample

    # the dataset's own __getitem__ end to end (what a DataLoader worker runs)
    t0 = time.perf_counter()
    m = 0
    for _ in range(args.repeats):
        for i in range(len(ds)):
            ds[i]
            m += 1
    getitem_ms = (time.perf_counter() - t0) / m * 1000

    gpu_ds = CocoKeypointDataset(ann, args.root / "images" / args.split, load_spec(args.spec), train=True,
                                 input_size=args.size, gpu_targets=True)
    gpu_ds.reseed(0)
    t0 = time.perf_counter()
    samples = []
    for _ in range(args.repeats):
        for i in range(len(gpu_ds)):
            samples.append(gpu_ds[i])
    worker_gpu_ms = (time.perf_counter() - t0) / len(samples) * 1000

    print(f"data pipeline, {len(ds)} images from {args.root} ({args.split}), input {args.size}, output {r}, "
          f"{n} samples, 1 thread; CPU: {platform.processor() or platform.machine()}")
    print(f"{'stage':<18}{'ms/sample':>10}{'share':>8}")
    total = sum(stages.values())
    for key, value in stages.items():
        print(f"{key:<18}{value / n * 1000:>10.2f}{value / total:>8.0%}")
    print(f"{'sum of stages':<18}{total / n * 1000:>10.2f}")
    print(f"__getitem__ end to end: {getitem_ms:.2f} ms/sample = {1000 / getitem_ms:.1f} samples/s per worker "
          f"({OFFICIAL_MS / getitem_ms:.1f}x the official {OFFICIAL_MS:.0f} ms)")
    print(f"gpu_targets worker part (decode + mask + warp): {worker_gpu_ms:.2f} ms/sample = "
          f"{1000 / worker_gpu_ms:.1f} samples/s per worker")

    if torch.cuda.is_available():
        device = torch.device("cuda")
        batch = samples[:32]
        p = max(len(s["joints"]) for s in batch)
        joints = torch.zeros(len(batch), p, batch[0]["joints"].shape[1], 3, dtype=torch.float64)
        areas = torch.ones(len(batch), p, dtype=torch.float64)
        for i, s in enumerate(batch):
            joints[i, : len(s["joints"])] = s["joints"]
            areas[i, : len(s["area"])] = s["area"]
        masks = torch.stack([s["mask"] for s in batch])
        joints, areas, masks = joints.to(device), areas.to(device), masks.to(device)
        ms = ms_per_call(lambda: build_targets_torch(joints, areas, masks, r, ds.target_config), device,
                         repeats=20, warmup=3)
        print(f"GPU targets ({torch.cuda.get_device_name()}): {ms:.2f} ms per batch of {len(batch)} "
              f"({ms / len(batch):.3f} ms/sample)")


if __name__ == "__main__":
    main()
