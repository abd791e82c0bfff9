"""The benchmark helpers (``benchmarks/*.py``) importable, as they are for the benchmark scripts."""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from tests.helpers.paths import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"


@pytest.fixture(scope="module")
def import_benchmark() -> Iterator[Callable[[str], ModuleType]]:
    """``import_benchmark("mfu")`` imports ``benchmarks/mfu.py`` (the scripts run as
    ``python benchmarks/<x>.py``, which puts that folder first on ``sys.path``). The folder leaves
    ``sys.path`` afterwards and the modules imported from it leave ``sys.modules``, so that their
    generic names (``timing``, ``inference``) cannot shadow anything in later tests."""
    before = set(sys.modules)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(BENCHMARKS))
        for name in set(sys.modules) - before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(str(BENCHMARKS)):
                del sys.modules[name]
