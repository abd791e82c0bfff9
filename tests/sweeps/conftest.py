"""Campaigns made from small sweep files, and run folders written as train.py writes them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dekr.sweeps import Campaign


def write_sweep(folder: Path, **fields: Any) -> Path:
    path = folder / "sweep.yaml"
    content = {"name": "ablation", "config": "demo.yaml", "seeds": [0, 1],
               "parameters": {"model.net.offset_block": ["adaptive", "basic"]}, **fields}
    path.write_text(yaml.safe_dump(content))
    return path


def finished_run(run_dir: Path, aps: list[float], status: str = "finished", costs: dict | None = None) -> Path:
    """A run folder as train.py leaves it: metrics.json with one validation per AP."""
    run_dir.mkdir(parents=True, exist_ok=True)
    history = [{"epoch": i, "step": 4 * (i + 1), "train/loss": 1.0 / (i + 1), "val/AP": ap} for i, ap in enumerate(aps)]
    (run_dir / "metrics.json").write_text(json.dumps({
        "status": status, "best_score": max(aps) if aps else None, "monitor": "val/AP", "epochs": len(aps),
        "final": history[-1] if history else {}, "history": history, "costs": costs or {}}))
    return run_dir


@pytest.fixture
def campaign(tmp_path: Path) -> Campaign:
    return Campaign.open(tmp_path / "campaign", write_sweep(tmp_path))
