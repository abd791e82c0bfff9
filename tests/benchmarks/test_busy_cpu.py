"""benchmarks/busy_cpu.py: the table of the runs (medians over rounds, against torch's defaults alone)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def busy_cpu(import_benchmark):
    return import_benchmark("busy_cpu")


def run(variant: str, busy: int, s_per_step: float, threads: int = 2, load: float = 0.5) -> dict:
    return {"variant": variant, "busy": busy, "steps": 12, "load": load, "wall_s": 10 * s_per_step,
            "s_per_step": s_per_step, "device": f"cpu ({threads} threads)"}


def test_table_gives_medians_against_torch_defaults_alone(busy_cpu):
    rows = [run("off", 0, 0.4), run("off", 0, 0.6), run("off", 1, 20.0), run("off", 1, 4.0),
            run("policy", 0, 0.5), run("policy", 1, 0.7, threads=1, load=1.5), run("policy", 1, 0.9, threads=1),
            {"variant": "passive", "busy": 0, "steps": 12, "load": 0.1, "wall_s": 3.0, "error": "Traceback"}]
    lines = busy_cpu.table(rows, ["policy", "off", "passive"], [0, 1]).splitlines()
    assert lines[0].startswith("| variant | busy loops beside | threads | wall s | train s/step | x off alone |")
    assert lines[2] == "| policy | 0 | 2 | 5 | 0.50 | 1.0x | 0.5 |"
    assert lines[3] == "| policy | 1 | 1 | 8 | 0.80 | 1.6x | 1.5, 0.5 |"
    assert lines[5] == "| off | 1 | 2 | 120 | 12.00 | 24.0x | 0.5, 0.5 |"
    assert lines[6] == "| passive | 0 | failed | | | | |"


def test_runs_are_in_an_environment_of_their_own(busy_cpu, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("WANDB_API_KEY", "x")
    env = busy_cpu.run_env("passive")
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["DEKR_CPU_THREADS"] == "off"
    assert "OMP_NUM_THREADS" not in env and "WANDB_API_KEY" not in env and env["WANDB_MODE"] == "disabled"
    assert "DEKR_CPU_THREADS" not in busy_cpu.run_env("policy")
