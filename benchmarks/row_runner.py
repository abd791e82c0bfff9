"""Benchmark rows run under time limits, for the suites (imported as ``row_runner``: they run as
``python benchmarks/<x>.py``, which puts this folder first on ``sys.path``).

A row that cannot run on a device (an error, out of memory, its time limit, the suite's budget
spent, or a row it builds on skipped) is recorded as skipped with the reason, so that one row
cannot take the others down; a failed :class:`CheckFailed` (the suite's own sanity check) is
recorded as failed. A result is a JSON-ready dict: ``section``, ``model``, ``setting``, ``name``,
``status`` (``ok``, ``skipped``, ``failed``), ``reason`` (when not ok), ``metrics`` (positive
finite numbers), ``notes`` and ``seconds`` (wall time of the row).
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

Metrics = dict[str, float]
#: Table columns filled from metrics: (metric, header, format); the ms metrics go into the notes.
COLUMNS = (("images_per_s", "images/s", "{:.1f}"), ("peak_memory_mib", "peak MiB", "{:.0f}"),
           ("mfu", "MFU", "{:.1%}"))
NOTE_METRICS = (("forward_gmacs_per_image", "{:.2f} G multiply-adds"), ("ms_per_step", "{:.1f} ms/step"),
                ("ms_per_image", "{:.1f} ms/image"), ("ms_per_batch", "{:.1f} ms/batch"))


class RowTimeout(BaseException):
    """A row ran past its time limit. A BaseException, so that library code catching
    ``Exception`` (torch.compile's fallbacks) cannot swallow it."""


class CheckFailed(Exception):
    """A measured quantity contradicts a known value: the suite itself is wrong."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`RowTimeout` in the main thread after ``seconds`` (SIGALRM; no limit where
    there is none). A call into C++ (a kernel launch, a cuDNN search) finishes before it fires."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise RowTimeout(f"ran past its time limit of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Row:
    """One line of the table: ``measure()`` returns its metrics.

    Attributes:
        section, model, setting: the row's name, in three columns.
        measure: does the work, returns positive metrics (``images_per_s``, ``peak_memory_mib``, ...).
        limit_s: hard time limit of ``measure``.
        needs: name of the row this one builds on (a mode added to another): skipped with it.
        compiled: whether ``measure`` compiles with torch.compile (dynamo is reset after it).
        notes: shown in the table's last column.
    """

    section: str
    model: str
    setting: str
    measure: Callable[[], Metrics]
    limit_s: float
    needs: str | None = None
    compiled: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.section} | {self.model} | {self.setting}"


def run_row(row: Row, deadline: float, results: dict[str, dict[str, Any]], device: str) -> dict[str, Any]:
    """Measure ``row`` within its limit and what is left until ``deadline`` (``time.monotonic()``);
    ``results`` (by row name) holds the rows run before. Never raises for a row that cannot run."""
    result: dict[str, Any] = {"section": row.section, "model": row.model, "setting": row.setting,
                              "name": row.name, "status": "ok", "metrics": {}, "notes": list(row.notes)}
    needed = results.get(row.needs) if row.needs else None
    start = time.monotonic()
    left = deadline - start
    if needed is not None and needed["status"] != "ok":
        result.update(status="skipped", reason=f"builds on '{needed['setting']}', which did not run")
    elif left < 1:
        result.update(status="skipped", reason="the suite's time budget was spent (raise --budget-s, or run "
                                                "this row alone with --rows)")
    else:
        limit = min(row.limit_s, left)
        try:
            with time_limit(limit):
                metrics = row.measure()
            bad = {k: v for k, v in metrics.items() if not (math.isfinite(v) and v > 0)}
            if bad:
                raise ValueError(f"measured non-positive or non-finite values {bad}")
            result["metrics"] = metrics
        except CheckFailed as error:
            result.update(status="failed", reason=str(error))
        except RowTimeout as error:
            cause = "its row limit" if limit == row.limit_s else "the suite's remaining budget"
            result.update(status="skipped", reason=f"{error} ({cause})")
        except Exception as error:  # noqa: BLE001 - one row's failure is recorded, the suite goes on
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            result.update(status="skipped", reason=f"{type(error).__name__}: {first_line}")
        finally:
            release_memory(device, row.compiled)
    result["seconds"] = round(time.monotonic() - start, 2)
    return result


def release_memory(device: str, compiled: bool) -> None:
    """Free what a row left behind (also after an error) before the next row measures its peak."""
    if compiled:
        torch._dynamo.reset()
    gc.collect()
    if device == "cuda":
        with contextlib.suppress(RuntimeError):  # a failed row may have left an error queued
            torch.cuda.synchronize()
        torch.cuda.empty_cache()


def format_table(results: list[dict[str, Any]]) -> str:
    """One markdown table of every result."""
    lines = ["| section | model | setting | " + " | ".join(h for _, h, _ in COLUMNS) + " | notes |",
             "|---" * (4 + len(COLUMNS)) + "|"]
    for r in results:
        metrics = r["metrics"]
        notes = [fmt.format(metrics[key]) for key, fmt in NOTE_METRICS if key in metrics]
        if r["status"] != "ok":
            notes.append(f"{r['status']}: {r['reason']}")
        cells = [fmt.format(metrics[key]) if key in metrics else "" for key, _, fmt in COLUMNS]
        lines.append(f"| {r['section']} | {r['model']} | {r['setting']} | " + " | ".join(cells)
                     + f" | {'; '.join(notes + r['notes'])} |")
    return "\n".join(lines)


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` whole: a run stopped part-way leaves the rows done so far, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(report, indent=1, allow_nan=False))
    partial.replace(path)
