"""benchmarks/row_runner.py: a row that cannot run is recorded with the reason, never raised, and
the rows built on it are skipped; a failed check is recorded as failed."""
from __future__ import annotations

import json
import time

import pytest


@pytest.fixture(scope="module")
def runner(import_benchmark):
    return import_benchmark("row_runner")


def too_slow() -> dict[str, float]:
    time.sleep(5)
    return {"images_per_s": 1.0}


def out_of_memory() -> dict[str, float]:
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")


def test_rows_that_cannot_run_are_recorded_not_raised(runner):
    def run(measure, limit_s=30.0, needs=None, results=None, budget_s=30.0):
        row = runner.Row("training", "w32", "fp32", measure, limit_s, needs=needs)
        return runner.run_row(row, time.monotonic() + budget_s, results or {}, "cpu")

    start = time.monotonic()
    timed_out = run(too_slow, limit_s=0.2)
    assert time.monotonic() - start < 2
    assert timed_out["status"] == "skipped" and "time limit of 0 s (its row limit)" in timed_out["reason"]
    cut = run(too_slow, budget_s=1.2)
    assert cut["status"] == "skipped" and "the suite's remaining budget" in cut["reason"]
    assert run(too_slow, budget_s=0)["reason"].startswith("the suite's time budget was spent")

    failed = run(out_of_memory)
    assert failed["status"] == "skipped"
    assert failed["reason"] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    dependent = run(lambda: {"images_per_s": 1.0}, needs="base", results={"base": failed})
    assert dependent["status"] == "skipped" and dependent["reason"] == "builds on 'fp32', which did not run"
    assert "non-positive" in run(lambda: {"images_per_s": 0.0})["reason"]
    assert "non-positive" in run(lambda: {"images_per_s": float("nan")})["reason"]

    def wrong_count():
        raise runner.CheckFailed("counted 40 G multiply-adds")

    assert run(wrong_count)["status"] == "failed"
    ok = run(lambda: {"images_per_s": 2.0}, needs="base", results={"base": {"status": "ok"}})
    assert ok["status"] == "ok" and ok["metrics"] == {"images_per_s": 2.0}


def test_table_and_json_hold_every_row(runner, tmp_path):
    rows = [runner.run_row(runner.Row("training", "w32", "bf16", lambda: {"images_per_s": 123.45, "mfu": 0.3,
                                                                          "ms_per_step": 81.0}, 30.0),
                           time.monotonic() + 30, {}, "cpu"),
            runner.run_row(runner.Row("loader", "synthetic", "2 workers", out_of_memory, 30.0),
                           time.monotonic() + 30, {}, "cpu")]
    table = runner.format_table(rows).splitlines()
    assert table[0] == "| section | model | setting | images/s | peak MiB | MFU | notes |"
    assert table[2] == "| training | w32 | bf16 | 123.5 |  | 30.0% | 81.0 ms/step |"
    assert table[3].startswith("| loader | synthetic | 2 workers |  |  |  | skipped: RuntimeError: CUDA out")
    path = tmp_path / "out" / "suite.json"
    runner.write_json(path, {"rows": rows})
    assert json.loads(path.read_text())["rows"] == rows
    assert not list(path.parent.glob("*.partial"))
