"""A campaign's results: one row per point, and the ablation table, one row per configuration with the
mean and standard deviation over its seeds, written as CSV, Markdown and LaTeX.

Per point, from its run folder's ``metrics.json``: the best and the final value of the sweep's metric
and the run's costs (``costs``: parameters, GFLOPs at the test input size, training and inference
images/s, peak memory, wall time; see :class:`dekr.callbacks.RunCosts`).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from dekr.file_publish import atomic_write_text
from dekr.sweeps.campaign import Campaign
from dekr.sweeps.spec import named_values
from dekr.sweeps.status import DONE, PointStatus, metric_values

# (column, costs key, scale, digits): the cost columns of the table
COSTS = (("params (M)", "parameters", 1e-6, 3), ("GFLOPs", "gflops", 1.0, 2),
         ("train img/s", "train_images_per_s", 1.0, 1), ("infer img/s", "inference_images_per_s", 1.0, 1),
         ("peak mem (MB)", "peak_memory_mb", 1.0, 0), ("wall time (min)", "wall_time_s", 1 / 60, 1))


def point_rows(campaign: Campaign, statuses: list[PointStatus]) -> list[dict[str, Any]]:
    """One row per point: index, configuration, seed, parameters (short keys), status, best and final
    metric, epochs, costs (raw units: parameters, GFLOPs, images/s, MB, s) and run folder."""
    metric = campaign.spec.metric
    rows = []
    for status in statuses:
        point = status.point
        row: dict[str, Any] = {"point": point.index, "configuration": point.configuration, "seed": point.seed,
                               **named_values(point.parameters),
                               "status": status.state}
        metrics = status.metrics if status.state == DONE else None
        if metrics is not None:
            values = metric_values(metrics, metric)
            row[f"best {metric}"] = max(values) if campaign.spec.mode == "max" else min(values)
            row[f"final {metric}"] = values[-1]
            row["epochs"] = metrics.get("epochs")
            costs = metrics.get("costs") or {}
            for _, key, _, _ in COSTS:
                row[key] = costs.get(key)
        row["run_dir"] = str(status.run_dir) if status.run_dir else ""
        rows.append(row)
    return rows


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def configuration_rows(campaign: Campaign, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration, in the sweep's order: its parameters, ``seeds`` (``done/total``), then
    for the metric's best and final value and each cost a ``(mean, std)`` over the configuration's done
    points (``None`` where none is done; std ``None`` for a single run)."""
    metric = campaign.spec.metric
    columns = [f"best {metric}", f"final {metric}", *(key for _, key, _, _ in COSTS)]
    table = []
    for configuration in sorted({r["configuration"] for r in rows}):
        members = [r for r in rows if r["configuration"] == configuration]
        done = [r for r in members if r["status"] == DONE]
        point = campaign.points[members[0]["point"]]
        out: dict[str, Any] = {"configuration": configuration,
                               **named_values(point.parameters),
                               "seeds": f"{len(done)}/{len(members)}"}
        for column in columns:
            values = [r[column] for r in done if isinstance(r.get(column), (int, float))]
            out[column] = mean_std(values) if values else None
        table.append(out)
    return table


def _format(value: Any, digits: int, scale: float = 1.0, pm: str = " ± ", exact_zero: bool = False) -> str:
    """``mean ± std``; the mean alone for one run, or (``exact_zero``) where the seeds agree exactly
    (parameters and FLOPs do not depend on the seed)."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        mean, std = value
        text = f"{mean * scale:.{digits}f}"
        return text if std is None or (exact_zero and std == 0) else f"{text}{pm}{std * scale:.{digits}f}"
    return str(value)


def _display(campaign: Campaign, table: list[dict[str, Any]], pm: str) -> tuple[list[str], list[list[str]]]:
    metric = campaign.spec.metric
    keys = [k for k in table[0] if k not in ("configuration",)] if table else []
    header, body = [], [[] for _ in table]
    for key in keys:
        cost = next((c for c in COSTS if c[1] == key), None)
        header.append(cost[0] if cost else key)
        for cells, row in zip(body, table):
            if cost:
                cells.append(_format(row[key], cost[3], cost[2], pm, exact_zero=True))
            elif key in (f"best {metric}", f"final {metric}"):
                cells.append(_format(row[key], 4, 1.0, pm))
            else:
                cells.append(str(row[key]))
    return header, body


def markdown_table(campaign: Campaign, table: list[dict[str, Any]]) -> str:
    header, body = _display(campaign, table, " ± ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def latex_table(campaign: Campaign, table: list[dict[str, Any]]) -> str:
    header, body = _display(campaign, table, r" $\pm$ ")

    def escape(text: str) -> str:
        return text if "$" in text else text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace(
            "%", r"\%").replace("&", r"\&").replace("#", r"\#")

    lines = [r"\begin{tabular}{" + "l" * len(header) + "}", r"\toprule",
             " & ".join(escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(escape(c) for c in cells) + r" \\" for cells in body]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


def _csv_text(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_results(campaign: Campaign, rows: list[dict[str, Any]], table: list[dict[str, Any]]) -> dict[str, Path]:
    """``points.csv`` (one row per point) and ``results.csv`` / ``results.md`` / ``results.tex`` (one per
    configuration; the CSV with ``<column>_mean`` and ``<column>_std``) in the campaign folder."""
    flat = []
    for row in table:
        out = {}
        for key, value in row.items():
            if isinstance(value, tuple):
                out[f"{key}_mean"], out[f"{key}_std"] = value
            elif value is None and key not in ("configuration", "seeds"):
                out[f"{key}_mean"], out[f"{key}_std"] = None, None
            else:
                out[key] = value
        flat.append(out)
    folder = campaign.folder
    paths = {"points": folder / "points.csv", "csv": folder / "results.csv", "markdown": folder / "results.md",
             "latex": folder / "results.tex"}
    atomic_write_text(paths["points"], _csv_text(rows))
    atomic_write_text(paths["csv"], _csv_text(flat))
    atomic_write_text(paths["markdown"], markdown_table(campaign, table))
    atomic_write_text(paths["latex"], latex_table(campaign, table))
    return paths
