"""The spread of the learning proofs' OKS-AP over seeds, CPU instruction-set paths and thread counts.

A training's rounding depends on the kernels the CPU runs (ATen's vectorised kernels chosen by
``ATEN_CPU_CAPABILITY``, oneDNN's convolutions by ``ONEDNN_MAX_CPU_ISA``) and on the thread count,
and a few hundred steps amplify it like a change of seed. This runs each proof of
``tests/scripts/learning_proofs.py`` (and the full demo, README command 1) from a baseline (seed 0,
this CPU's own path, one thread) and varies one factor at a time (``--grid`` runs every combination),
then prints one row per run and, per proof, the range of its best AP against the proof's threshold.
``demo_full`` also gives the range of its AP at each validation epoch (the README's demo figures).

    python benchmarks/learning_spread.py --proofs demo minicoco skeleton ap10k --seeds 0 1 2 \\
        --paths native avx2 default --threads 1 2 --out spread.json

Runs share the cores: each takes as many as its threads, so two one-thread runs go side by side on a
2-core machine. ``--out`` is rewritten after every run, and runs already in it are not run again.
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.scripts.learning_proofs import PROOFS, Expectation, LearningProof, RunOutcome, run_proof  # noqa: E402
from tests.scripts.script_runner import usable_cpus  # noqa: E402

#: CPU paths: the environment that forces them. ``native`` is what this CPU picks by itself.
PATHS: dict[str, dict[str, str]] = {
    "native": {},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
#: The CPU flag each forced path needs.
PATH_FLAGS = {"avx512": "avx512f", "avx2": "avx2", "default": "sse4_1"}

#: README command 1, whole: 40 epochs, validated every 5.
DEMO_FULL = LearningProof("demo_full", lambda folder: ["--config", "demo.yaml"],
                          Expectation(min_best=0.0, min_rise=0.0, measured=(0.0, 1.0), validations=8),
                          timeout=7200)
RUNS = {**PROOFS, "demo_full": DEMO_FULL}


@dataclass(frozen=True)
class Setting:
    proof: str
    seed: int
    path: str
    threads: int

    @property
    def key(self) -> str:
        return f"{self.proof}/seed{self.seed}/{self.path}/{self.threads}t"


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    line = next((line for line in text.splitlines() if line.startswith("model name")), "")
    return line.partition(":")[2].strip() or platform.processor()


def settings(proofs: list[str], seeds: list[int], paths: list[str], threads: list[int], grid: bool) -> list[Setting]:
    """Every combination with ``grid``; otherwise the baseline (first of each list) and one factor varied."""
    if grid:
        return [Setting(*values) for values in itertools.product(proofs, seeds, paths, threads)]
    chosen: list[Setting] = []
    for proof in proofs:
        base = Setting(proof, seeds[0], paths[0], threads[0])
        varied = ([Setting(proof, s, base.path, base.threads) for s in seeds]
                  + [Setting(proof, base.seed, p, base.threads) for p in paths[1:]]
                  + [Setting(proof, base.seed, base.path, t) for t in threads[1:]])
        chosen += [s for s in varied if s not in chosen]
    return chosen


class Cores:
    """A counting lock over the cores: a run of n threads holds n of them."""

    def __init__(self, total: int) -> None:
        self.free, self.total, self.cond = total, total, threading.Condition()

    def take(self, n: int) -> int:
        n = min(n, self.total)
        with self.cond:
            self.cond.wait_for(lambda: self.free >= n)
            self.free -= n
        return n

    def give(self, n: int) -> None:
        with self.cond:
            self.free += n
            self.cond.notify_all()


def run_one(setting: Setting, work: Path) -> dict:
    """Train one setting in ``work`` (a finished run already there is read, not run again)."""
    start = time.monotonic()
    folder = work / setting.key.replace("/", "_")
    if (folder / "seconds.json").exists():  # written when the run finished
        outcome = RunOutcome.read(folder / "run")
        return {**asdict(setting), "aps": outcome.aps, "best": outcome.best, "losses": outcome.losses,
                "seconds": json.loads((folder / "seconds.json").read_text())}
    try:
        outcome = run_proof(RUNS[setting.proof], folder, threads=setting.threads, seed=setting.seed,
                            env=PATHS[setting.path])
    except (AssertionError, subprocess.TimeoutExpired) as error:
        return {**asdict(setting), "error": str(error)[-2000:], "seconds": time.monotonic() - start}
    seconds = time.monotonic() - start
    (folder / "seconds.json").write_text(json.dumps(seconds))
    return {**asdict(setting), "aps": outcome.aps, "best": outcome.best, "losses": outcome.losses,
            "seconds": seconds}


def passes(row: dict) -> bool:
    """Whether a run's outcome meets its proof's present expectation."""
    outcome = RunOutcome(aps=row["aps"], best=row["best"], losses=row["losses"])
    return not outcome.failures(PROOFS[row["proof"]].expected)


def format_runs(rows: list[dict]) -> str:
    lines = ["| proof | seed | CPU path | threads | OKS-AP by validation | best | wall s | proof passes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["proof"], r["seed"], r["path"], r["threads"])):
        if "error" in r:
            lines.append(f"| {r['proof']} | {r['seed']} | {r['path']} | {r['threads']} | error | | "
                         f"{r['seconds']:.0f} | no |")
            continue
        aps = " / ".join(f"{ap:.3f}" for ap in r["aps"])
        verdict = "" if r["proof"] not in PROOFS else ("yes" if passes(r) else "NO")
        lines.append(f"| {r['proof']} | {r['seed']} | {r['path']} | {r['threads']} | {aps} | {r['best']:.3f} | "
                     f"{r['seconds']:.0f} | {verdict} |")
    return "\n".join(lines)


def format_summary(rows: list[dict]) -> str:
    lines = ["| proof | runs | best AP min-max | smallest rise | loss fell (least) | threshold (best, rise, loss) "
             "| margin |", "|---|---|---|---|---|---|---|"]
    for name in sorted({r["proof"] for r in rows} & set(PROOFS)):
        done = [r for r in rows if r["proof"] == name and "error" not in r]
        if not done:
            continue
        expected = PROOFS[name].expected
        bests = [r["best"] for r in done]
        rise = min(r["best"] - r["aps"][0] for r in done)
        ratio = min(RunOutcome(r["aps"], r["best"], r["losses"]).loss_ratio for r in done)
        loss = f"{expected.min_loss_ratio}x" if expected.min_loss_ratio else "-"
        lines.append(f"| {name} | {len(done)} | {min(bests):.3f}-{max(bests):.3f} | {rise:.3f} | {ratio:.0f}x | "
                     f"{expected.min_best}, {expected.min_rise}, {loss} | {min(bests) - expected.min_best:+.3f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def format_demo_epochs(rows: list[dict], every: int = 5) -> str:
    done = [r for r in rows if r["proof"] == "demo_full" and "error" not in r]
    if not done:
        return ""
    epochs = [every * (i + 1) for i in range(max(len(r["aps"]) for r in done))]
    lines = ["| epoch | " + " | ".join(str(e) for e in epochs) + " |", "|---" * (len(epochs) + 1) + "|"]
    cells = []
    for i in range(len(epochs)):
        values = [r["aps"][i] for r in done if len(r["aps"]) > i]
        cells.append(f"{min(values):.2f}-{max(values):.2f}")
    lines.append(f"| OKS-AP ({len(done)} runs) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(rows: list[dict]) -> str:
    head = f"learning spread, {date.today()}, {cpu_model()}, {usable_cpus()} usable CPUs"
    parts = [head, format_runs(rows), format_summary(rows), format_demo_epochs(rows)]
    return "\n\n".join(p for p in parts if p)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proofs", nargs="+", default=list(PROOFS), choices=list(RUNS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--paths", nargs="+", default=["native", "avx2", "default"], choices=list(PATHS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--grid", action="store_true", help="every combination, not one factor at a time")
    parser.add_argument("--out", type=Path, help="JSON of the runs, rewritten after each; its runs are kept")
    parser.add_argument("--work", type=Path, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args(argv)

    flags = cpu_flags()
    missing = [p for p in args.paths if p in PATH_FLAGS and flags and PATH_FLAGS[p] not in flags]
    if missing:
        parser.error(f"this CPU cannot run the path(s) {', '.join(missing)} (no {', '.join(PATH_FLAGS[p] for p in missing)})")
    rows: list[dict] = json.loads(args.out.read_text())["runs"] if args.out and args.out.exists() else []
    done = {Setting(r["proof"], r["seed"], r["path"], r["threads"]).key for r in rows if "error" not in r}
    rows = [r for r in rows if "error" not in r]
    todo = [s for s in settings(args.proofs, args.seeds, args.paths, args.threads, args.grid) if s.key not in done]
    # the wide runs first, while no one-thread run holds a core; the slow unvectorised path last
    todo.sort(key=lambda s: (-s.threads, s.path == "default"))
    cores, lock = Cores(usable_cpus()), threading.Lock()

    def job(setting: Setting, work: Path) -> None:
        held = cores.take(setting.threads)
        try:
            row = run_one(setting, work)
        finally:
            cores.give(held)
        with lock:
            rows.append(row)
            print(f"{setting.key}: {row.get('aps', row.get('error', '')[-200:])} ({row['seconds']:.0f} s)", flush=True)
            if args.out:
                args.out.write_text(json.dumps({"cpu": cpu_model(), "runs": rows}, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        with ThreadPoolExecutor(max_workers=usable_cpus()) as pool:
            for future in [pool.submit(job, s, work) for s in todo]:
                future.result()
    print(report(rows))
    return rows


if __name__ == "__main__":
    main()
