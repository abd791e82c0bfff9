"""Shared test fixtures (paths to the small real data in tests/fixtures), the threads each test
process may use, and the order and grouping that let ``pytest -n`` workers share the machine."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.paths import FIXTURES, REPO_ROOT
from tests.scripts.script_runner import threads_per_worker, usable_cpus


# The scripts are importable by name (``import train``, ``import evaluate``) in every test: their
# ``main`` runs in process where a subprocess would only add interpreter and import time.
sys.path.insert(0, str(REPO_ROOT / "scripts"))


# In-process tests compute with this worker's share of the cores; subprocesses take it from the env
# (tests/scripts/script_runner.clean_env gives one thread unless a test asks for its share).
os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_worker()))
torch.set_num_threads(threads_per_worker())


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per usable CPU (a cgroup CPU quota counts, which xdist's own count misses)."""
    return usable_cpus()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The learning proofs first, then the other slow tests, then the rest (a stable sort), so that
    parallel workers start the longest runs at once and finish together; every test of the local
    SLURM cluster in one xdist group, so one worker runs them all against one cluster."""
    def rank(item: pytest.Item) -> int:
        return 0 if item.get_closest_marker("learning") else 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("slurm"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
