#!/usr/bin/env python3
"""Grid or random search over config fields: a SLURM job array, or the same points run locally.

    python scripts/sweep.py adaptive_conv_ablation.yaml --list            # the points
    python scripts/sweep.py adaptive_conv_ablation.yaml --local           # run them one after another
    python scripts/sweep.py adaptive_conv_ablation.yaml --slurm [--dry-run] [--sbatch-args "..."]
    python scripts/sweep.py adaptive_conv_ablation.yaml --collect         # results.csv + table

A sweep file (bare names are looked up in ``configs/sweeps/``)::

    name: adaptive_conv_ablation
    config: w32_coco.yaml          # the base run config (train.py --config)
    method: grid                   # grid | random
    num_samples: 8                 # random: number of points
    seed: 0                        # random: sampler seed
    metric: val/AP                 # the column the table is sorted by
    args: [--trainer.max_epochs, "140"]   # extra train.py arguments for every point
    parameters:                    # dotted train.py keys
      model.net.offset_block: [adaptive, basic]          # grid / random choice
      model.optim.lr: {distribution: log_uniform, min: 1.0e-4, max: 3.0e-3}   # random only
      model.optim.milestones: [[90, 120], [100, 130]]     # list values are fine

Point ``i`` runs ``train.py --config CONFIG ARGS --key value ... --trainer.default_root_dir
OUT/point-<i>``; every run writes ``metrics.json``, which ``--collect`` gathers into
``OUT/results.csv`` (one row per point: parameters, status, best score, final validation figures).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dekr.config import resolve_config_path  # noqa: E402
SWEEP_DIR = REPO / "configs" / "sweeps"
ARRAY_SBATCH = REPO / "scripts" / "slurm" / "sweep.sbatch"
RESULT_KEYS = ("val/AP", "val/AP50", "val/AP75", "val/APM", "val/APL", "val/AR", "val/AP_easy", "val/AP_medium",
               "val/AP_hard", "train/loss")


def resolve_sweep(name: str | Path) -> Path:
    return resolve_config_path(name, SWEEP_DIR, kind="sweep")


def load_sweep(path: Path) -> dict[str, Any]:
    spec = yaml.safe_load(path.read_text()) or {}
    known = {"name", "config", "method", "num_samples", "seed", "metric", "args", "parameters"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"{path}: unknown sweep field(s) {sorted(unknown)}; known: {sorted(known)}")
    if not spec.get("parameters"):
        raise ValueError(f"{path}: no parameters to sweep")
    spec.setdefault("name", path.stem)
    spec.setdefault("method", "grid")
    spec.setdefault("metric", "val/AP")
    spec.setdefault("args", [])
    if spec["method"] not in ("grid", "random"):
        raise ValueError(f"{path}: method must be grid or random, got {spec['method']!r}")
    for key, values in spec["parameters"].items():
        if isinstance(values, dict):
            if spec["method"] == "grid":
                raise ValueError(f"{path}: parameter {key}: distributions need method: random (grid takes lists)")
            if values.get("distribution") not in ("uniform", "log_uniform", "int_uniform"):
                raise ValueError(f"{path}: parameter {key}: distribution must be uniform, log_uniform or int_uniform")
            if not values.get("min", 0) < values.get("max", 0) or (values["distribution"] == "log_uniform"
                                                                     and values["min"] <= 0):
                raise ValueError(f"{path}: parameter {key}: needs 0 < min < max (log) or min < max")
        elif not isinstance(values, list) or not values:
            raise ValueError(f"{path}: parameter {key}: expected a non-empty list of values or a distribution")
    return spec


def _sample(values: Any, rng: random.Random) -> Any:
    if isinstance(values, list):
        return rng.choice(values)
    lo, hi = values["min"], values["max"]
    if values["distribution"] == "uniform":
        return rng.uniform(lo, hi)
    if values["distribution"] == "log_uniform":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return rng.randint(int(lo), int(hi))


def expand(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The sweep's points, each a {dotted key: value} dict, in a deterministic order."""
    params = spec["parameters"]
    keys = list(params)
    if spec["method"] == "grid":
        return [dict(zip(keys, combo)) for combo in itertools.product(*(params[k] for k in keys))]
    rng = random.Random(spec.get("seed", 0))
    return [{k: _sample(params[k], rng) for k in keys} for _ in range(int(spec.get("num_samples", 10)))]


def _cli_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def point_command(spec: dict[str, Any], point: dict[str, Any], run_dir: Path, extra: list[str]) -> list[str]:
    cmd = [sys.executable, str(REPO / "scripts" / "train.py")]
    if spec.get("config"):
        cmd += ["--config", str(spec["config"])]
    cmd += [str(a) for a in spec["args"]]
    for key, value in point.items():
        cmd += [f"--{key}", _cli_value(value)]
    return cmd + list(extra) + ["--trainer.default_root_dir", str(run_dir)]


def out_dir(spec: dict[str, Any], given: str | None) -> Path:
    return Path(given) if given else Path("runs") / "sweeps" / spec["name"]


def run_point(spec: dict[str, Any], points: list[dict[str, Any]], index: int, out: Path, extra: list[str],
              replace_process: bool = False) -> int:
    """Run point ``index`` with train.py; ``replace_process`` execs it (array tasks: SLURM's
    signals then reach train.py directly, for Lightning's checkpoint-and-requeue)."""
    if not 0 <= index < len(points):
        raise IndexError(f"point {index} out of range: the sweep has {len(points)} points")
    run_dir = out / f"point-{index:03d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "point.json").write_text(json.dumps({"index": index, "parameters": points[index]}, indent=2))
    cmd = point_command(spec, points[index], run_dir, extra)
    print(f"[sweep {spec['name']}] point {index}: {shlex.join(cmd[1:])}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if replace_process:
        os.execve(cmd[0], cmd, env)
    return subprocess.run(cmd, env=env).returncode


def collect(spec: dict[str, Any], points: list[dict[str, Any]], out: Path) -> tuple[Path, list[dict[str, Any]]]:
    rows = []
    for i, point in enumerate(points):
        row: dict[str, Any] = {"point": i, **{k: _cli_value(v) for k, v in point.items()}}
        metrics_file = out / f"point-{i:03d}" / "metrics.json"
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            row["status"] = "done"
            row["best_score"] = metrics.get("best_score")
            row["epochs"] = metrics.get("epochs")
            for key in RESULT_KEYS:
                if key in metrics.get("final", {}):
                    row[key] = metrics["final"][key]
            row["run_dir"] = str(metrics_file.parent)
        else:
            row["status"] = "missing"
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path, rows


def format_table(rows: list[dict[str, Any]], metric: str) -> str:
    key = metric if any(metric in r for r in rows) else "best_score"
    ordered = sorted(rows, key=lambda r: -(r.get(key) if isinstance(r.get(key), (int, float)) else -1e9))
    columns = [c for c in ordered[0] if c != "run_dir"] if ordered else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in ordered:
        lines.append("| " + " | ".join(f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, ""))
                                       for c in columns) + " |")
    return "\n".join(lines)


def submit_array(spec_path: Path, spec: dict[str, Any], points: list[dict[str, Any]], out: Path,
                 sbatch_args: list[str], extra: list[str], dry_run: bool) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "points.json").write_text(json.dumps(points, indent=2))
    cmd = ["sbatch", "--parsable", f"--array=0-{len(points) - 1}", f"--job-name=sweep-{spec['name']}",
           f"--output={out / 'slurm-%A_%a.out'}", *sbatch_args, str(ARRAY_SBATCH), str(spec_path.resolve()),
           "--out", str(out.resolve())]
    if extra:
        cmd += ["--", *extra]
    if dry_run:
        print(shlex.join(cmd))
        return cmd
    job = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().split(";")[0]
    print(f"submitted job array {job} ({len(points)} points); results: python scripts/sweep.py {spec_path} "
          f"--out {out} --collect")
    return [job]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="sweep YAML (path, or name in configs/sweeps/)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--list", action="store_true", help="print the points")
    mode.add_argument("--local", action="store_true", help="run every point here, one after another")
    mode.add_argument("--slurm", action="store_true", help="submit a SLURM job array, one task per point")
    mode.add_argument("--point", type=int, help="run one point (what each array task does)")
    mode.add_argument("--collect", action="store_true", help="gather the points' metrics into results.csv")
    parser.add_argument("--out", help="sweep folder (default runs/sweeps/<name>)")
    parser.add_argument("--sbatch-args", default="", help="extra sbatch options, e.g. '--partition gpu'")
    parser.add_argument("--dry-run", action="store_true", help="--slurm: print the sbatch command only")
    parser.epilog = "Arguments after -- go to train.py for every point."
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:split]), argv[split + 1:]
    try:
        spec_path = resolve_sweep(args.sweep)
        spec = load_sweep(spec_path)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    points = expand(spec)
    out = out_dir(spec, args.out)
    if args.list:
        for i, point in enumerate(points):
            print(f"{i:3d}  " + "  ".join(f"{k}={_cli_value(v)}" for k, v in point.items()))
        return 0
    if args.point is not None:
        return run_point(spec, points, args.point, out, extra, replace_process=True)
    if args.slurm:
        submit_array(spec_path, spec, points, out, shlex.split(args.sbatch_args), extra, args.dry_run)
        return 0
    failed = []
    if args.local:
        for i in range(len(points)):
            if run_point(spec, points, i, out, extra) != 0:
                failed.append(i)
    path, rows = collect(spec, points, out)
    print(format_table(rows, spec["metric"]))
    print(f"results: {path}")
    if failed:
        print(f"error: points {failed} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
