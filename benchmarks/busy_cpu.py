#!/usr/bin/env python3
"""The demo's training on a CPU shared with other jobs: with the thread policy (:mod:`dekr.cpu_threads`)
and without it, alone and beside processes that keep cores busy.

    python benchmarks/busy_cpu.py                    # 12 demo steps; 0, 1, 2 busy loops; every variant
    python benchmarks/busy_cpu.py --steps 32 --busy 0 1 --variants policy off --rounds 3 --out busy.json
    python benchmarks/busy_cpu.py --report busy.json   # the table of saved runs again

Each run is ``scripts/train.py --config demo.yaml`` for ``--steps`` training batches of one epoch, no
validation, W&B disabled, in a fresh folder, with ``--busy`` pure-Python busy loops (one core each)
running beside it. The variants (the run's environment, after this shell's thread variables are removed):

* ``policy``: the default (``DEKR_CPU_THREADS`` unset): passive OpenMP waiting, threads for the idle cores;
* ``off``: ``DEKR_CPU_THREADS=off``, torch's own defaults (a thread per core, spinning waits);
* ``passive``: ``DEKR_CPU_THREADS=off OMP_WAIT_POLICY=PASSIVE``, passive waiting alone;
* ``one-thread``: ``DEKR_CPU_THREADS=off OMP_NUM_THREADS=1``, one thread alone.

The runs are interleaved (each round runs every variant at each load, in an order rotated per round)
so that other jobs on the machine slow every variant alike. Printed: one row per variant and load,
the median over rounds of the run's wall time (imports included) and of its training seconds per step
(``costs.train_images_per_s`` of its ``metrics.json``), that against torch's defaults on otherwise idle
cores (``off`` beside 0 loops), and the 1-minute load average at each run's start (other jobs' share).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict[str, str]] = {
    "policy": {},
    "off": {"DEKR_CPU_THREADS": "off"},
    "passive": {"DEKR_CPU_THREADS": "off", "OMP_WAIT_POLICY": "PASSIVE"},
    "one-thread": {"DEKR_CPU_THREADS": "off", "OMP_NUM_THREADS": "1"},
}
#: Variables of this shell that would choose the threads of every variant alike.
CLEARED = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS", "DEKR_CPU_THREADS")
BUSY_LOOP = "while True: pass"
BATCH_SIZE = 8  # configs/demo.yaml's data.batch_size


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    line = next((line for line in lines if line.startswith("model name")), "")
    return line.partition(":")[2].strip() or platform.processor() or platform.machine()


def run_env(variant: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith("WANDB_")}
    return {**env, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO), **VARIANTS[variant]}


def train_once(variant: str, busy: int, steps: int, folder: Path, timeout: float) -> dict:
    """One demo training of ``steps`` batches beside ``busy`` busy loops: its wall time, seconds per
    training step and threads (from its ``metrics.json``), and the load average at its start."""
    command = [sys.executable, str(REPO / "scripts/train.py"), "--config", "demo.yaml",
               "--trainer.limit_train_batches", str(steps), "--trainer.max_epochs", "1",
               "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
               "--trainer.default_root_dir", str(folder)]
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(busy)]
    try:
        time.sleep(1.0 if busy else 0.0)  # the loops are running before the run starts
        load = os.getloadavg()[0]
        start = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, env=run_env(variant), capture_output=True, text=True,
                                timeout=timeout, check=False)
        wall = time.perf_counter() - start
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    row = {"variant": variant, "busy": busy, "steps": steps, "load": round(load, 2), "wall_s": round(wall, 1)}
    if result.returncode != 0:
        return {**row, "error": result.stderr[-1500:]}
    costs = json.loads((folder / "metrics.json").read_text())["costs"]
    return {**row, "s_per_step": round(BATCH_SIZE / costs["train_images_per_s"], 3),
            "device": costs["device"],
            "policy_line": next((line for line in result.stderr.splitlines() if "CPU threads:" in line), "")}


def table(rows: list[dict], variants: list[str], busy: list[int]) -> str:
    """Markdown: one row per variant and load, medians over the rounds; "x off alone" compares the
    seconds per step with torch's defaults on cores nothing else uses (the ``off`` runs beside 0 loops)."""
    def runs_of(variant: str, n: int) -> list[dict]:
        return [r for r in rows if r["variant"] == variant and r["busy"] == n and "error" not in r]

    baseline = runs_of("off", 0)
    base_step = statistics.median(r["s_per_step"] for r in baseline) if baseline else None
    columns = ["variant", "busy loops beside", "threads", "wall s", "train s/step", "x off alone",
               "load avg at start"]
    lines = ["| " + " | ".join(columns) + " |",
             "|---|---|---|---|---|---|---|"]
    for variant in variants:
        for n in busy:
            runs = runs_of(variant, n)
            if not runs:
                lines.append(f"| {variant} | {n} | failed | | | | |")
                continue
            step = statistics.median(r["s_per_step"] for r in runs)
            ratio = f"{step / base_step:.1f}x" if base_step else ""
            threads = "/".join(sorted({r["device"].split("(")[-1].split()[0] for r in runs}))
            wall = statistics.median(r["wall_s"] for r in runs)
            loads = ", ".join(f"{r['load']:.1f}" for r in runs)
            lines.append(f"| {variant} | {n} | {threads} | {wall:.0f} | {step:.2f} | {ratio} | {loads} |")
    return "\n".join(lines)


def machine() -> str:
    return f"{cpu_model()}, {len(os.sched_getaffinity(0))} CPUs"


def header(steps: int, rounds: int, day: str, on: str) -> str:
    return (f"demo training beside busy loops, {steps} steps of demo.yaml per run, {day}, {on}, "
            f"median of {rounds} round(s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="training batches per run (demo: 32 per epoch)")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2], help="busy loops beside the run")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=1, help="runs of each variant at each load (median)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a run is stopped")
    parser.add_argument("--out", type=Path, help="JSON of every run, rewritten after each")
    parser.add_argument("--report", type=Path, help="print the table of this --out JSON, run nothing")
    args = parser.parse_args(argv)

    if args.report:
        saved = json.loads(args.report.read_text())
        rows = saved["runs"]
        rounds = max(sum(r["variant"] == v and r["busy"] == n for r in rows)
                     for v in args.variants for n in args.busy)
        print(header(rows[0]["steps"], rounds, saved.get("date", "date not saved"), saved.get("machine", "")))
        print(table(rows, args.variants, args.busy))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="busy_cpu_") as work:
        for round_index in range(args.rounds):
            for n in args.busy:
                shift = (round_index + n) % len(args.variants)  # who goes first changes from round to round
                for variant in args.variants[shift:] + args.variants[:shift]:
                    folder = Path(work) / f"{variant}_{n}_{round_index}"
                    rows.append(train_once(variant, n, args.steps, folder, args.timeout))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                    if args.out:
                        saved = {"date": str(date.today()), "machine": machine(), "runs": rows}
                        args.out.write_text(json.dumps(saved, indent=1))
    print(header(args.steps, args.rounds, str(date.today()), machine()))
    print(table(rows, args.variants, args.busy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
