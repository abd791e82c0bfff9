"""The interim README demo runs on a real fixture image and prints the official output layout."""
from __future__ import annotations

from tests.scripts.script_runner import run_script


def test_demo_prints_output_shapes() -> None:
    result = run_script("demo.py", ["--backbone", "hrnet_w18_small", "--size", "128"])
    assert "heatmaps (1, 18, 32, 32)" in result.stdout
    assert "offsets (1, 34, 32, 32)" in result.stdout
    assert "000000000785.jpg 640x425" in result.stdout
