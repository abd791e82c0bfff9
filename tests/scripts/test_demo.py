"""The interim README demo runs on a real fixture image and prints the official output layout."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_prints_output_shapes(repo_root: Path) -> None:
    result = subprocess.run([sys.executable, str(repo_root / "scripts/demo.py"), "--backbone", "hrnet_w18_small",
                             "--size", "128"], capture_output=True, text=True, check=True)
    assert "heatmaps (1, 18, 32, 32)" in result.stdout
    assert "offsets (1, 34, 32, 32)" in result.stdout
    assert "000000000785.jpg 640x425" in result.stdout
