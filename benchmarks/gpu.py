#!/usr/bin/env python3
"""GPU benchmark suite: training, inference and data loading where users train, in one command.

    python benchmarks/gpu.py --out gpu.json                    # one H100/H200: under 8 minutes
    python benchmarks/gpu.py --tiny --out tiny.json            # every row, tiny network, CPU (CI:
                                                               # its numbers only show each row runs)
    python benchmarks/gpu.py --tiny --device cuda              # the same on a GPU: a smoke test
    python benchmarks/gpu.py --rows compile --budget-s 900     # the rows whose name has "compile"

Prints one table (and writes it as JSON with ``--out``, rewritten after every row):

* flops: forward multiply-adds per image, counted (``mfu.py``); W32 at 512 must count the paper's
  45.4 G, or the row fails and the suite exits with 1.
* training, W32 at 512 with 10 images per GPU and W48 at 640 with 5 (the official recipes):
  images/s of the whole step of ``train_step.py`` (forward, loss, backward, Adam), the row's peak
  memory (network, optimizer state, batch, activations) and the MFU, for ours (grid_sample
  backend), ours (torchvision ``deform_conv2d`` backend) and the per-keypoint loop (the official
  structure), each in four cumulative modes: fp32, bf16-mixed, + channels_last, + torch.compile.
* inference: images/s end to end (preprocess, network with the flipped copy, decode, pose NMS,
  poses as numpy) through ``Predictor.predict_arrays`` -> ``predict_poses``, W32 at 512 in bf16,
  batches of 1, 16 and 32 images padded to one canvas, on the real COCO fixture images. The network
  is randomly initialised and the center threshold is off, so every image decodes as many
  candidates as the decoder keeps (``max_num_people``): the decode and NMS cost is the worst case.
* loader: images/s of the real ``DEKRDataModule`` training loader (synthetic data at W32's input
  size and batch) with 0, 2, 4, 8, ... workers; the summary names the fewest workers that keep up
  with the fastest W32 training row of ours. Synthetic images are rendered, not JPEG-decoded.

MFU (``mfu.py``): fp32 rows against the TF32 peak where cuDNN convolutions use TF32 (PyTorch's
default), bf16 rows against the bf16 peak; known peaks by device name, or ``--peak-tflops``.
Peak memory (``peak_memory.py``): MiB above the level before the row, at its peak; on a CPU the
resident set, indicative only in this long-lived process.

Each row warms up, then times at least ``min_steps`` steps for about ``--row-seconds``,
synchronised with the GPU, under a hard time limit. Rows run most important first (torch.compile
last) until ``--budget-s`` is spent; a row that cannot run is recorded as skipped with the reason
(``row_runner.py``), and so are the modes built on it.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from inference import load_images
from mfu import (
    PAPER_W32_512_GMACS,
    count_forward_macs,
    known_peaks,
    parse_peaks,
    peak_precision,
    training_mfu,
)
from peak_memory import cpu_peak_supported, peak_growth_mib
from row_runner import CheckFailed, Metrics, Row, format_table, run_row, write_json
from timing import ms_per_call
from train_step import make_batch, make_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.data.datamodule import DEKRDataModule  # noqa: E402
from dekr.data.spec import load_spec  # noqa: E402
from dekr.data.synthetic import SyntheticConfig  # noqa: E402
from dekr.data.transforms import AugmentationConfig  # noqa: E402
from dekr.inference import DecodeConfig, Predictor  # noqa: E402
from dekr.models.dekr import DEKRNet, DEKRNetConfig  # noqa: E402

#: How far the W32-at-512 count may be from the paper's 45.4 G (it prints one decimal).
PAPER_GMACS_TOLERANCE = 0.05


@dataclass(frozen=True)
class ModelSetting:
    """A network and its training input: ``batch`` images of ``size`` x ``size`` per GPU."""

    backbone: str
    heatmap_channels: int
    size: int
    batch: int

    @property
    def label(self) -> str:
        return f"{self.backbone} {self.size}x{self.size} x{self.batch}"

    def net_config(self, **changes: Any) -> DEKRNetConfig:
        return DEKRNetConfig(backbone=self.backbone, heatmap_channels=self.heatmap_channels, **changes)


@dataclass(frozen=True)
class Implementation:
    """How the offset head's adaptive convolutions run."""

    label: str
    backend: str
    per_keypoint_loop: bool


@dataclass(frozen=True)
class Mode:
    """A training precision / memory layout / compilation setting; each adds to the one before."""

    label: str
    bf16: bool
    channels_last: bool
    compile: bool


IMPLEMENTATIONS = (
    Implementation("ours (grid_sample)", "grid_sample", False),
    Implementation("ours (torchvision)", "torchvision", False),
    Implementation("per-keypoint loop (official structure)", "torchvision", True),
)
MODES = (
    Mode("fp32", False, False, False),
    Mode("bf16-mixed", True, False, False),
    Mode("bf16-mixed + channels_last", True, True, False),
    Mode("bf16-mixed + channels_last + compile", True, True, True),
)


@dataclass(frozen=True)
class SuiteSettings:
    """What the suite runs and how long each row may take.

    Attributes:
        models: the training rows' networks; the first also sets the loader rows' input and batch.
        inference_model: network and input size of the inference rows (its ``batch`` is unused).
        inference_batches: images per forward pass of the inference rows.
        inference_images: images per timed call (the fixture images, repeated when needed).
        loader_workers: worker counts of the loader rows.
        loader_min_batches: batches timed at least per loader row (and four per worker).
        warmup_steps: untimed steps (or calls) before timing; the first one compiles.
        min_steps, max_steps: timed steps at least and at most.
        row_seconds: time aimed at for a row's timed steps (0: exactly ``min_steps``).
        row_limit_s: hard time limit of a row; ``compile_limit_s`` for a torch.compile row.
        budget_s: no row starts after this many seconds, and the last one is cut there.
        compile_backend: ``torch.compile`` backend (``inductor``; ``eager`` only traces with dynamo).
    """

    models: tuple[ModelSetting, ...]
    inference_model: ModelSetting
    inference_batches: tuple[int, ...]
    inference_images: int
    loader_workers: tuple[int, ...]
    loader_min_batches: int
    warmup_steps: int
    min_steps: int
    max_steps: int
    row_seconds: float
    row_limit_s: float
    compile_limit_s: float
    budget_s: float
    compile_backend: str


def default_workers() -> tuple[int, ...]:
    """0, 2, 4, 8, ... up to the CPUs this process may use, and that count itself."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return tuple(sorted({0, cpus} | {2 ** i for i in range(1, 16) if 2 ** i <= cpus}))


def full_settings() -> SuiteSettings:
    """The GPU suite: the official per-GPU batches; fits 8 minutes on one H100/H200 (budget 450 s
    of rows, plus start-up)."""
    w32 = ModelSetting("hrnet_w32", 32, 512, 10)
    return SuiteSettings(
        models=(w32, ModelSetting("hrnet_w48", 48, 640, 5)), inference_model=w32,
        inference_batches=(1, 16, 32), inference_images=32, loader_workers=default_workers(),
        loader_min_batches=10, warmup_steps=3, min_steps=3, max_steps=200, row_seconds=3.0,
        row_limit_s=90.0, compile_limit_s=240.0, budget_s=450.0, compile_backend="inductor")


def tiny_settings() -> SuiteSettings:
    """Every row with a tiny network, input and step count: seconds per row on a CPU. torch.compile
    rows trace with dynamo only (``eager`` backend): inductor compiles HRNet for minutes on a CPU."""
    tiny = ModelSetting("hrnet_w18_small", 32, 64, 2)
    return SuiteSettings(
        models=(tiny, ModelSetting("hrnet_w18_small", 48, 64, 1)), inference_model=tiny,
        inference_batches=(1, 2, 4), inference_images=4, loader_workers=(0, 2), loader_min_batches=4,
        warmup_steps=0, min_steps=1, max_steps=1, row_seconds=0.0, row_limit_s=60.0, compile_limit_s=60.0,
        budget_s=120.0, compile_backend="eager")


# --------------------------------------------------------------------------- measurements


def with_peak_memory(measure: Callable[[], Metrics], device: str) -> Metrics:
    """``measure()``'s metrics plus ``peak_memory_mib``, MiB above the level before it at its peak
    (without it on a CPU whose peak cannot be reset)."""
    if device == "cpu" and not cpu_peak_supported():
        return measure()
    metrics: Metrics = {}
    metrics["peak_memory_mib"] = peak_growth_mib(lambda: metrics.update(measure()), device)
    return metrics


def timed_ms(fn: Callable[[], Any], device: str, settings: SuiteSettings) -> float:
    """Milliseconds per call of ``fn``: ``warmup_steps`` untimed calls, one calibrating call, then
    enough calls for about ``row_seconds`` (``min_steps`` to ``max_steps``), synchronised."""
    for _ in range(settings.warmup_steps):
        fn()
    repeats = settings.min_steps
    if settings.row_seconds > 0:
        one_ms = max(ms_per_call(fn, device, 1, warmup=0), 1e-3)
        repeats = max(settings.min_steps, min(settings.max_steps, int(settings.row_seconds * 1000 / one_ms)))
    return ms_per_call(fn, device, repeats, warmup=0)


def measure_flops(model: ModelSetting, device: str, macs: dict[str, float]) -> Metrics:
    """Count ``model``'s forward multiply-adds into ``macs`` (for its training rows' MFU); W32 at
    512 with the official heads must count the paper's figure."""
    config = model.net_config()
    count = count_forward_macs(config, model.size, device)
    macs[model.label] = count
    is_paper_w32 = config == DEKRNetConfig(backbone="hrnet_w32", heatmap_channels=32) and model.size == 512
    if is_paper_w32 and abs(count / 1e9 - PAPER_W32_512_GMACS) > PAPER_GMACS_TOLERANCE:
        raise CheckFailed(f"counted {count / 1e9:.3f} G multiply-adds for W32 at 512, the paper has "
                          f"{PAPER_W32_512_GMACS}: the FLOP count, and every MFU, is wrong")
    return {"forward_gmacs_per_image": count / 1e9}


def measure_training(model: ModelSetting, implementation: Implementation, mode: Mode, settings: SuiteSettings,
                     device: str, macs: dict[str, float], peaks: dict[str, float]) -> Metrics:
    """Images/s, ms/step and peak memory of ``train_step.py``'s step, and its MFU where the peak is known."""
    config = model.net_config(adaptive_backend=implementation.backend)

    def measure() -> Metrics:
        batch = make_batch(model.batch, model.size, config.num_keypoints, device, mode.channels_last)
        with torch.device(device):  # build and initialise the network on the GPU: seconds per row
            step = make_step(config, batch, device, mode.bf16, mode.channels_last, mode.compile,
                             implementation.per_keypoint_loop, settings.compile_backend)
        ms = timed_ms(step, device, settings)
        return {"images_per_s": 1000 * model.batch / ms, "ms_per_step": ms}

    metrics = with_peak_memory(measure, device)
    peak = peaks.get(peak_precision(mode.bf16, device))
    if peak and model.label in macs:
        metrics["mfu"] = training_mfu(macs[model.label], metrics["images_per_s"], peak)
    return metrics


def measure_inference(model: ModelSetting, batch_size: int, settings: SuiteSettings, device: str) -> Metrics:
    """End-to-end images/s and peak memory of ``Predictor.predict_arrays``: flip test, bf16,
    ``batch_size`` images per forward pass, every image decoding ``max_num_people`` candidates."""
    spec = load_spec("coco")
    images = load_images(settings.inference_images)
    if not images:
        raise FileNotFoundError("no images under tests/fixtures/coco or tests/fixtures/coco_minicoco")
    images = [images[i % len(images)] for i in range(settings.inference_images)]
    decode = DecodeConfig.for_dataset(spec, input_size=model.size, flip_test=True, batch_size=batch_size,
                                      pad_batch=True, autocast_dtype="bfloat16", keypoint_threshold=-1.0)

    def measure() -> Metrics:
        torch.manual_seed(0)
        with torch.device(device):
            net = DEKRNet(model.net_config(num_keypoints=spec.num_keypoints)).eval()
        predictor = Predictor(net, spec, decode, device=device)
        ms = timed_ms(lambda: predictor.predict_arrays(images), device, settings)
        return {"images_per_s": 1000 * len(images) / ms, "ms_per_image": ms / len(images)}

    return with_peak_memory(measure, device)


class LoaderBench:
    """The real ``DEKRDataModule`` training loader on synthetic data at ``model``'s input size and
    batch, built once (the synthetic annotations take milliseconds per image) for every worker count."""

    def __init__(self, model: ModelSetting, settings: SuiteSettings, device: str) -> None:
        self.model, self.settings, self.device = model, settings, device
        self._datamodule: DEKRDataModule | None = None

    def batches_for(self, workers: int) -> tuple[int, int]:
        """(untimed, timed) batches. The workers start together, so their first batches arrive
        together after the start-up; then at least ``loader_min_batches`` and four rounds of
        the workers are timed, before the epoch ends (no drain at its end is timed)."""
        return max(1, workers), max(self.settings.loader_min_batches, 4 * workers)

    @property
    def datamodule(self) -> DEKRDataModule:
        if self._datamodule is None:
            most = max(sum(self.batches_for(w)) for w in self.settings.loader_workers)
            synthetic = SyntheticConfig(num_train=(most + 1) * self.model.batch, num_val=1,
                                        image_size=self.model.size)
            # flip_prob 0: the synthetic people are colour-coded left/right (see dekr/data/synthetic.py)
            self._datamodule = DEKRDataModule(
                dataset="synthetic", input_size=self.model.size, batch_size=self.model.batch,
                pin_memory=self.device == "cuda", persistent_workers=False,
                augmentation=AugmentationConfig(flip_prob=0.0), synthetic=synthetic)
            self._datamodule.dataset("train")
        return self._datamodule

    def measure(self, workers: int) -> Metrics:
        datamodule = self.datamodule
        datamodule.num_workers = workers
        untimed, timed = self.batches_for(workers)
        batches = iter(datamodule.train_dataloader())
        for _ in range(untimed):
            next(batches)
        start = time.perf_counter()
        images = sum(len(next(batches)["image"]) for _ in range(timed))
        seconds = time.perf_counter() - start
        del batches  # shuts the workers down
        return {"images_per_s": images / seconds, "ms_per_batch": 1000 * seconds / timed}


# --------------------------------------------------------------------------- the suite


def build_rows(settings: SuiteSettings, device: str, peaks: dict[str, float]) -> tuple[list[Row], list[Row]]:
    """(the rows in the order they run: most important first, torch.compile last; in table order)."""
    macs: dict[str, float] = {}
    flops = [Row("flops", m.label, "forward multiply-adds per image",
                 lambda m=m: measure_flops(m, device, macs), settings.row_limit_s) for m in settings.models]
    training: list[Row] = []
    for model in settings.models:
        for implementation in IMPLEMENTATIONS:
            previous: Row | None = None
            for mode in MODES:
                row = Row("training", model.label, f"{implementation.label}, {mode.label}",
                          lambda m=model, i=implementation, o=mode: measure_training(
                              m, i, o, settings, device, macs, peaks),
                          settings.compile_limit_s if mode.compile else settings.row_limit_s,
                          needs=previous.name if previous else None, compiled=mode.compile,
                          notes=[f"torch.compile backend {settings.compile_backend}"] if mode.compile else [])
                training.append(row)
                previous = row
    net = settings.inference_model
    inference = [Row("inference", f"{net.backbone} {net.size}", f"bf16, flip, batch {b}, end to end",
                     lambda b=b: measure_inference(net, b, settings, device), settings.row_limit_s)
                 for b in settings.inference_batches]
    fed = settings.models[0]
    loader_bench = LoaderBench(fed, settings, device)
    loader = [Row("loader", f"synthetic {fed.size}x{fed.size} x{fed.batch}", f"{w} workers",
                  lambda w=w: loader_bench.measure(w), settings.row_limit_s) for w in settings.loader_workers]
    compiled = [r for r in training if r.compiled]
    # ours before the torchvision backend before the loop; within each, the models in order
    compiled.sort(key=lambda r: (r.setting.startswith("per-keypoint"), "torchvision" in r.setting))
    run_order = flops + [r for r in training if not r.compiled] + inference + loader + compiled
    return run_order, flops + training + inference + loader


def loader_summary(results: list[dict[str, Any]], settings: SuiteSettings) -> dict[str, Any]:
    """The fewest loader workers whose images/s reach the fastest training row of ours for the
    first model (whose input size and batch the loader rows use)."""
    first = settings.models[0].label
    training = [r for r in results if r["section"] == "training" and r["model"] == first
                and r["status"] == "ok" and r["setting"].startswith("ours")]
    loaders = [r for r in results if r["section"] == "loader" and r["status"] == "ok"]
    if not training or not loaders:
        return {"workers_to_feed_one_gpu": None, "reason": "no training row or no loader row ran"}
    fastest = max(training, key=lambda r: r["metrics"]["images_per_s"])
    demand = fastest["metrics"]["images_per_s"]
    enough = [int(r["setting"].split()[0]) for r in loaders if r["metrics"]["images_per_s"] >= demand]
    return {"training_images_per_s": demand, "training_row": fastest["name"],
            "workers_to_feed_one_gpu": min(enough) if enough else None,
            "loader_images_per_s": {r["setting"]: r["metrics"]["images_per_s"] for r in loaders}}


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, SuiteSettings, str, dict[str, float]]:
    """(arguments, settings, device, peak TFLOP/s by precision)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true",
                        help="tiny network, input and step counts (CI; CPU unless --device cuda)")
    parser.add_argument("--device", choices=("cuda", "cpu"),
                        help="default: cuda when available, cpu with --tiny")
    parser.add_argument("--out", type=Path, help="write the table as JSON here (rewritten after every row)")
    parser.add_argument("--peak-tflops", nargs="+", default=[], metavar="PRECISION=TFLOPS",
                        help="this device's peaks for the MFU (bf16, tf32, fp32), e.g. bf16=989 tf32=495; "
                             "they override the known peaks")
    parser.add_argument("--rows", nargs="+", default=[], metavar="SUBSTRING",
                        help="run only the rows whose name has one of these (the flops rows always run)")
    parser.add_argument("--budget-s", type=float,
                        help="start no row after this many seconds (default 450; tiny 120)")
    parser.add_argument("--row-seconds", type=float,
                        help="time aimed at per row's timed steps (default 3; tiny 0: one step)")
    parser.add_argument("--compile-backend", help="torch.compile backend (default inductor; tiny eager)")
    parser.add_argument("--workers", type=int, nargs="+",
                        help="loader worker counts (default 0, 2, 4, ... up to the CPUs)")
    args = parser.parse_args(argv)
    try:
        overrides = parse_peaks(args.peak_tflops)
    except ValueError as error:
        parser.error(str(error))
    device = args.device or ("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but CUDA is not available here; use --device cpu (with --tiny)")
    settings = tiny_settings() if args.tiny else full_settings()
    changes = {"budget_s": args.budget_s, "row_seconds": args.row_seconds,
               "compile_backend": args.compile_backend,
               "loader_workers": tuple(args.workers) if args.workers else None}
    settings = replace(settings, **{k: v for k, v in changes.items() if v is not None})
    peaks = {**(known_peaks(device_name(device)) if device == "cuda" else {}), **overrides}
    return args, settings, device, peaks


def main(argv: list[str] | None = None) -> int:
    args, settings, device, peaks = parse_args(argv)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    name = device_name(device)
    run_order, table_order = build_rows(settings, device, peaks)
    # the flops rows always run: the training rows' MFU needs their counts
    run_order = [r for r in run_order
                 if r.section == "flops" or not args.rows or any(w in r.name for w in args.rows)]
    report: dict[str, Any] = {
        "device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
        "mode": "tiny" if args.tiny else "full",
        "peak_tflops": peaks, "settings": asdict(settings),
        "memory": ("torch.cuda.max_memory_allocated above the row's start" if device == "cuda"
                   else "peak resident set (VmHWM) above the row's start"),
        "rows": [], "summary": {}}
    print(f"DEKR GPU suite on {name}, torch {torch.__version__}: {len(run_order)} rows, budget "
          f"{settings.budget_s:.0f} s" + ("" if peaks else "; no known peak, so no MFU (see --peak-tflops)"),
          file=sys.stderr, flush=True)
    results: dict[str, dict[str, Any]] = {}
    start = time.monotonic()
    for i, row in enumerate(run_order, 1):
        results[row.name] = result = run_row(row, start + settings.budget_s, results, device)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in result["metrics"].items()) or result.get("reason", "")
        print(f"[{i:>2}/{len(run_order)} {time.monotonic() - start:4.0f} s] {row.name}: {result['status']}, "
              f"{shown}", file=sys.stderr, flush=True)
        report["rows"] = [results[r.name] for r in table_order if r.name in results]
        if args.out:
            write_json(args.out, report)
    loader = loader_summary(report["rows"], settings)
    report["summary"] = {"seconds": round(time.monotonic() - start, 1), "loader": loader}
    if args.out:
        write_json(args.out, report)

    print(f"DEKR GPU suite: {name}, torch {torch.__version__}, {report['summary']['seconds']:.0f} s")
    print(format_table(report["rows"]))
    if loader.get("training_row"):
        workers = loader["workers_to_feed_one_gpu"]
        print(f"\nloader workers to feed one GPU at {loader['training_images_per_s']:.1f} images/s "
              f"({loader['training_row']}): "
              + (str(workers) if workers is not None else f"more than {max(settings.loader_workers)}"))
    return 1 if any(r["status"] == "failed" for r in report["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
