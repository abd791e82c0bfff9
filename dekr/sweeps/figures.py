"""The campaign's two figures (matplotlib, written without a display):

* ``metric_vs_gflops.png``: the best metric of each configuration (mean over its seeds, error bars one
  standard deviation) against its GFLOPs at the test input size;
* ``learning_curves.png``: the metric at every validation of every point, overlaid (one colour per
  configuration, one line per seed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dekr.sweeps.campaign import Campaign
from dekr.sweeps.spec import named_values
from dekr.sweeps.status import DONE, PointStatus


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    return plt


def _label(campaign: Campaign, configuration: int) -> str:
    point = next(p for p in campaign.points if p.configuration == configuration)
    return " ".join(f"{k}={v}" for k, v in named_values(point.parameters).items())


def metric_vs_gflops(campaign: Campaign, table: list[dict[str, Any]], path: Path) -> Path | None:
    """Write the metric-vs-GFLOPs plot of the configuration ``table`` (see
    :func:`dekr.sweeps.results.configuration_rows`); None when no configuration has both figures."""
    column = f"best {campaign.spec.metric}"
    rows = [r for r in table if r.get(column) and r.get("gflops")]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in enumerate(rows):
        (mean, std), (gflops, _) = row[column], row["gflops"]
        ax.errorbar([gflops], [mean], yerr=[std or 0.0], fmt="o", capsize=4, color=colours[i % len(colours)],
                    label=f"{_label(campaign, row['configuration'])} (n={row['seeds'].split('/')[0]})")
    return _save(plt, fig, ax, path, "GFLOPs at the test input size",
                 f"best {campaign.spec.metric} (mean ± std over seeds)", campaign.spec.name)


def learning_curves(campaign: Campaign, statuses: list[PointStatus], path: Path) -> Path | None:
    """Write the overlaid learning curves of every point with a run (done or not); None when none validated."""
    metric = campaign.spec.metric
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    labelled: set[int] = set()
    drawn = 0
    for status in statuses:
        rows = [r for r in (status.metrics or {}).get("history", []) if metric in r]
        if not rows:
            continue
        point = status.point
        seed_rank = [p.seed for p in campaign.points if p.configuration == point.configuration].index(point.seed)
        label = None if point.configuration in labelled else _label(campaign, point.configuration)
        labelled.add(point.configuration)
        ax.plot([r["epoch"] + 1 for r in rows], [r[metric] for r in rows], styles[seed_rank % len(styles)],
                color=colours[point.configuration % len(colours)], alpha=1.0 if status.state == DONE else 0.5,
                marker=".", label=label)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    return _save(plt, fig, ax, path, "epoch", metric, f"{campaign.spec.name}: every point (line style: seed)")


def _save(plt: Any, fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Label, grid and legend ``ax``, write ``fig`` to ``path`` and close it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
