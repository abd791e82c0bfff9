#!/usr/bin/env python3
"""Ablation campaigns: a sweep file run here or as a SLURM job array, watched, resubmitted, collected.

    python scripts/sweep.py adaptive_conv_ablation --list                 # the points
    python scripts/sweep.py adaptive_conv_ablation --slurm [--dry-run]    # submit the points not run yet
    python scripts/sweep.py adaptive_conv_ablation --status               # done / failed / running / pending
    python scripts/sweep.py adaptive_conv_ablation --slurm --resubmit failed   # failed points go on from last.ckpt
    python scripts/sweep.py adaptive_conv_ablation --slurm --force --points 3  # rerun point 3 in a fresh folder
    python scripts/sweep.py adaptive_conv_ablation --collect              # the table (CSV, Markdown, LaTeX) + figures
    python scripts/sweep.py demo_ablation --local                         # every unfinished point, one after another

The sweep file's format is in :mod:`dekr.sweeps.spec`; the campaign folder (``--out``, default
``runs/sweeps/<name>``) in :mod:`dekr.sweeps.campaign`. The points are frozen in the campaign folder
the first time it runs or is submitted; later commands may name the campaign by ``--out`` alone.
Arguments after ``--`` go to train.py for every point (frozen with the points).

Exit status: 0, 1 when a local point failed, 2 for a user error (one line on stderr), 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dekr.config_errors import report_user_error
from dekr.library_warnings import silence_library_noise
from dekr.sweeps import Campaign, SweepError
from dekr.sweeps.campaign import exec_point, run_here
from dekr.sweeps.figures import learning_curves, metric_vs_gflops
from dekr.sweeps.results import configuration_rows, markdown_table, point_rows, write_results
from dekr.sweeps.slurm import sbatch_command, submit
from dekr.sweeps.spec import load_sweep, resolve_sweep
from dekr.sweeps.status import (
    DONE,
    FAILED,
    NEVER_RUN,
    PENDING,
    RUNNING,
    PointStatus,
    campaign_status,
    format_status,
)

RESUBMIT = {"missing": {NEVER_RUN}, "failed": {FAILED}, "unfinished": {NEVER_RUN, FAILED}}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Arguments after -- go to train.py for every point.")
    parser.add_argument("sweep", nargs="?", help="sweep YAML (path, or name in configs/sweeps/); "
                                                 "optional when --out names an existing campaign")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--list", action="store_true", help="print the points")
    mode.add_argument("--local", action="store_true", help="run the selected points here, one after another")
    mode.add_argument("--slurm", action="store_true", help="submit the selected points as one SLURM job array")
    mode.add_argument("--status", action="store_true", help="each point's state; failed points with their log's end")
    mode.add_argument("--collect", action="store_true", help="write the results table and figures")
    mode.add_argument("--point", type=int, help="run one point of the campaign in --out (what an array task does)")
    parser.add_argument("--out", help="campaign folder (default runs/sweeps/<name>)")
    parser.add_argument("--resubmit", choices=sorted(RESUBMIT),
                        help="which points --local / --slurm run: missing (never run; --slurm's default), failed "
                             "(they resume from their last.ckpt) or unfinished (both; --local's default)")
    parser.add_argument("--points", help="only these points, e.g. '3,5-7'")
    parser.add_argument("--force", action="store_true",
                        help="rerun the selected points even when done or failed, each in a fresh run folder")
    parser.add_argument("--sbatch-args", default="", help="extra sbatch options, e.g. '--partition gpu --qos high'")
    parser.add_argument("--dry-run", action="store_true", help="--slurm: print the sbatch command, submit nothing")
    split = argv.index("--") if "--" in argv else len(argv)
    return parser.parse_args(argv[:split]), argv[split + 1:]


def parse_indices(text: str) -> list[int]:
    indices: list[int] = []
    try:
        for part in filter(None, text.split(",")):
            lo, _, hi = part.partition("-")
            indices += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise SweepError(f"--points {text!r}: expected indices like '3,5-7'") from None
    return indices


def open_campaign(args: argparse.Namespace, extra: list[str]) -> Campaign:
    sweep_file = resolve_sweep(args.sweep) if args.sweep else None
    if sweep_file is None and not args.out:
        raise SweepError("name the sweep file, or the campaign folder with --out")
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / load_sweep(sweep_file).name
    if (args.list or args.dry_run) and not (out / "campaign.json").exists():  # a preview freezes nothing
        spec = load_sweep(sweep_file)
        return Campaign(out, spec, spec.points(), sweep_file, "")
    return Campaign.open(out, sweep_file, extra)


def select(campaign: Campaign, statuses: list[PointStatus], args: argparse.Namespace, default: str) -> dict[int, Path | None]:
    """Point index -> the run folder to train it in (an existing one: resume it, or its empty folder;
    None: a fresh one), as the options ask."""
    wanted = set(parse_indices(args.points)) if args.points else None
    for index in wanted or ():
        campaign.point(index)  # out of range: a clear error
    states = RESUBMIT[args.resubmit or default]
    chosen = {}
    for status in statuses:
        point, state = status.point, status.state
        named = wanted is not None and point.index in wanted
        if wanted is not None and not named:
            continue
        if state in (RUNNING, PENDING):
            if named:
                raise SweepError(f"point {point.index} is {state} ({status.run_dir}); wait for it or scancel it")
            continue
        if args.force and state in (DONE, FAILED):
            chosen[point.index] = None  # a fresh run folder
        elif state == DONE:
            if named:
                raise SweepError(f"point {point.index} is done ({status.run_dir}); --force reruns it in a fresh "
                                 "run folder")
        elif state in states or named:
            chosen[point.index] = status.run_dir
    return chosen


def run_folders(campaign: Campaign, chosen: dict[int, Path | None]) -> dict[int, Path]:
    """Point index -> its run folder, fresh ones made."""
    return {i: run_dir if run_dir is not None else campaign.new_run(campaign.point(i)) for i, run_dir in chosen.items()}


def collect(campaign: Campaign) -> int:
    statuses = campaign_status(campaign)
    rows = point_rows(campaign, statuses)
    table = configuration_rows(campaign, rows)
    paths = write_results(campaign, rows, table)
    figures = [metric_vs_gflops(campaign, table, campaign.folder / "metric_vs_gflops.png"),
               learning_curves(campaign, statuses, campaign.folder / "learning_curves.png")]
    print(markdown_table(campaign, table))
    print(format_status(statuses, with_logs=False).splitlines()[-1])
    for path in [*paths.values(), *filter(None, figures)]:
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    silence_library_noise()
    args, extra = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.point is not None:
            if not args.out:
                raise SweepError("--point needs --out, the campaign folder")
            campaign = Campaign.load(args.out)
            point = campaign.point(args.point)
            if campaign.sweep_file.exists():  # edited since it was queued: the frozen point runs, said once
                try:
                    campaign.check_sweep_file(campaign.sweep_file)
                except SweepError as err:
                    print(f"warning: {err}; running the frozen point", file=sys.stderr)
            exec_point(campaign, point, campaign.current_run(point) or campaign.new_run(point))
        campaign = open_campaign(args, extra)
        if args.list:
            for point in campaign.points:
                print(f"{point.index:4d}  {point.label()}")
            return 0
        if args.status:
            print(format_status(campaign_status(campaign)))
            return 0
        if args.collect:
            return collect(campaign)
        statuses = campaign_status(campaign)
        chosen = select(campaign, statuses, args, "missing" if args.slurm else "unfinished")
        if not chosen:
            print(f"nothing to run: {format_status(statuses, with_logs=False).splitlines()[-1]}; "
                  "--resubmit failed / --force --points N select more")
            return 0
        if args.slurm:
            if args.dry_run:
                print(shlex.join(sbatch_command(campaign, [campaign.point(i) for i in sorted(chosen)],
                                                shlex.split(args.sbatch_args))))
                return 0
            runs = run_folders(campaign, chosen)
            try:
                job = submit(campaign, runs, shlex.split(args.sbatch_args))
            except SweepError:
                for index, run_dir in runs.items():  # the fresh folders made for it, still empty
                    if chosen[index] is None and not any(run_dir.iterdir()):
                        run_dir.rmdir()
                raise
            print(f"submitted job array {job}: points {', '.join(str(i) for i in sorted(runs))}"
                  f"\nwatch: python scripts/sweep.py --out {campaign.folder} --status")
            return 0
        failed = []
        for index, run_dir in sorted(run_folders(campaign, chosen).items()):
            if run_here(campaign, campaign.point(index), run_dir) != 0:
                failed.append(index)
        collect(campaign)
        if failed:
            print(f"error: points {failed} failed (python scripts/sweep.py --out {campaign.folder} --status "
                  "shows why; --resubmit failed resumes them)", file=sys.stderr)
            return 1
        return 0
    except SweepError as err:
        return report_user_error(err)
    except FileNotFoundError as err:  # a sweep file that is not there
        return report_user_error(err)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
