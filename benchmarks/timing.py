"""Wall-clock timing shared by the benchmarks (imported as ``timing``: they run as ``python benchmarks/<x>.py``,
which puts this folder first on ``sys.path``)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def synchronize(device: str | torch.device) -> None:
    """Wait for queued GPU work when ``device`` is a CUDA device (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def ms_per_call(fn: Callable[[], Any], device: str | torch.device, repeats: int, warmup: int = 1) -> float:
    """Mean milliseconds per call of ``fn``: ``warmup`` untimed calls, then ``repeats`` calls timed as
    one block, synchronised with the GPU before and after so that its queued work is counted."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats * 1000


def fastest_ms_per_call(fn: Callable[[], Any], device: str | torch.device, repeats: int, warmup: int = 1) -> float:
    """Milliseconds of the fastest of ``repeats`` calls of ``fn`` (after ``warmup`` untimed calls),
    each synchronised with the GPU. On a machine shared with other jobs the fastest call is the
    one least slowed by them, so it compares variants measured minutes apart better than a mean."""
    for _ in range(warmup):
        fn()
    fastest = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest * 1000
