"""benchmarks/gpu.py in its tiny CPU mode (what CI runs, so that the GPU suite cannot rot): every
row is measured or recorded as skipped with the reason, into one table and its JSON."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from tests.helpers.paths import REPO_ROOT
from tests.scripts.script_runner import clean_env

SUITE = REPO_ROOT / "benchmarks" / "gpu.py"
METRICS = {"flops": {"forward_gmacs_per_image"},
           "training": {"images_per_s", "ms_per_step", "peak_memory_mib", "mfu"},
           "inference": {"images_per_s", "ms_per_image", "peak_memory_mib"},
           "loader": {"images_per_s", "ms_per_batch"}}


@pytest.mark.slow
def test_tiny_mode_measures_every_row(tmp_path):
    out = tmp_path / "tiny.json"
    # a peak for the CPU, so that the MFU column is computed too
    command = [sys.executable, str(SUITE), "--tiny", "--out", str(out), "--peak-tflops", "fp32=1", "bf16=1"]
    start = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=600,
                          check=False)
    seconds = time.monotonic() - start
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    report = json.loads(out.read_text())
    rows = report["rows"]

    # 2 FLOP counts, 2 models x 3 implementations x 4 modes, 3 inference batches, 2 worker counts
    sections = [r["section"] for r in rows]
    counts = {s: sections.count(s) for s in METRICS}
    assert counts == {"flops": 2, "training": 24, "inference": 3, "loader": 2}
    assert len(sections) == 31 and len({r["name"] for r in rows}) == 31
    for row in rows:
        assert f"| {row['section']} | {row['model']} | {row['setting']} |" in done.stdout, row["name"]
        if row["status"] == "ok":
            assert set(row["metrics"]) == METRICS[row["section"]], row["name"]
            assert all(math.isfinite(v) and v > 0 for v in row["metrics"].values()), row
            continue
        # torchvision's CPU deform_conv2d has no bfloat16 kernel: its bf16 rows, and the modes built
        # on them, are the only rows a CPU cannot run
        assert row["status"] == "skipped", row
        assert row["section"] == "training" and "bf16" in row["setting"], row
        assert not row["setting"].startswith("ours (grid_sample)"), row
        assert "BFloat16" in row["reason"] or row["reason"].startswith("builds on"), row
    ok_training = [r for r in rows if r["section"] == "training" and r["status"] == "ok"]
    assert len(ok_training) == 2 * (4 + 1 + 1)  # per model: grid_sample in every mode, the others in fp32
    assert all("torch.compile backend eager" in r["notes"] for r in rows if "compile" in r["setting"])
    # the tiny network trains far slower than even a loader without workers delivers
    assert report["summary"]["loader"]["workers_to_feed_one_gpu"] == 0
    assert "loader workers to feed one GPU" in done.stdout
    print(f"tiny suite: {seconds:.0f} s wall, {report['summary']['seconds']:.0f} s of rows")
