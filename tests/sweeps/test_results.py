"""dekr.sweeps.results and figures: the per-configuration table with mean +- std over seeds, its files."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2

from dekr.sweeps import Campaign
from dekr.sweeps.figures import learning_curves, metric_vs_gflops
from dekr.sweeps.results import configuration_rows, point_rows, write_results
from dekr.sweeps.status import campaign_status
from tests.sweeps.conftest import finished_run

COSTS = {"parameters": 2_500_000, "gflops": 1.5, "train_images_per_s": 40.0, "inference_images_per_s": 90.0,
         "peak_memory_mb": 800.0, "wall_time_s": 120.0}


def test_table_has_mean_and_std_over_seeds(campaign: Campaign) -> None:
    p0, p1, p2, p3 = campaign.points
    finished_run(campaign.new_run(p0), [0.2, 0.5, 0.4], costs=COSTS)
    finished_run(campaign.new_run(p1), [0.3, 0.7], costs={**COSTS, "wall_time_s": 180.0})
    finished_run(campaign.new_run(p2), [0.1, 0.3], costs={**COSTS, "gflops": 1.2})
    finished_run(campaign.new_run(p3), [0.2], status="failed")
    statuses = campaign_status(campaign)
    rows = point_rows(campaign, statuses)
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed"]
    assert rows[0]["best val/AP"] == 0.5 and rows[0]["final val/AP"] == 0.4
    table = configuration_rows(campaign, rows)
    assert [t["offset_block"] for t in table] == ["adaptive", "basic"] and [t["seeds"] for t in table] == ["2/2", "1/2"]
    mean, std = table[0]["best val/AP"]
    assert math.isclose(mean, 0.6) and math.isclose(std, math.sqrt(0.02))
    assert table[1]["best val/AP"] == (0.3, None) and table[0]["wall_time_s"] == (150.0, math.sqrt(1800.0))
    paths = write_results(campaign, rows, table)
    markdown = paths["markdown"].read_text()
    assert "| offset_block | seeds | best val/AP | final val/AP | params (M) | GFLOPs |" in markdown
    assert "| adaptive | 2/2 | 0.6000 ± 0.1414 | 0.5500 ± 0.2121 | 2.500 | 1.50 |" in markdown
    assert "| basic | 1/2 | 0.3000 | 0.3000 | 2.500 | 1.20 |" in markdown
    latex = paths["latex"].read_text()
    assert r"0.6000 $\pm$ 0.1414" in latex and r"offset\_block" in latex and latex.startswith(r"\begin{tabular}")
    with open(paths["csv"]) as f:
        flat = list(csv.DictReader(f))
    assert float(flat[0]["best val/AP_mean"]) == 0.6 and flat[1]["best val/AP_std"] == ""
    with open(paths["points"]) as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["done", "done", "done", "failed"]


def test_figures_are_written(tmp_path: Path, campaign: Campaign) -> None:
    for point, aps in zip(campaign.points, ([0.2, 0.5], [0.3, 0.6], [0.1, 0.3], [0.2, 0.25])):
        finished_run(campaign.new_run(point), aps, costs={**COSTS, "gflops": 1.0 + point.configuration})
    statuses = campaign_status(campaign)
    table = configuration_rows(campaign, point_rows(campaign, statuses))
    scatter = metric_vs_gflops(campaign, table, tmp_path / "a.png")
    curves = learning_curves(campaign, statuses, tmp_path / "b.png")
    for path in (scatter, curves):
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 300 and image.std() > 10


def test_no_figures_without_results(tmp_path: Path, campaign: Campaign) -> None:
    statuses = campaign_status(campaign)
    table = configuration_rows(campaign, point_rows(campaign, statuses))
    assert metric_vs_gflops(campaign, table, tmp_path / "a.png") is None
    assert learning_curves(campaign, statuses, tmp_path / "b.png") is None and not list(tmp_path.glob("*.png"))
