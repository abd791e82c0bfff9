"""Peak memory of one call, shared by the benchmarks (imported as ``peak_memory``: they run as
``python benchmarks/<x>.py``, which puts this folder first on ``sys.path``).

* CUDA: the caching allocator's peak of allocated bytes (``torch.cuda.max_memory_allocated``).
* CPU: the process's peak resident set (``VmHWM`` in ``/proc/self/status``), reset before the
  call by writing 5 to ``/proc/self/clear_refs`` (Linux). Measure in a process started with
  :data:`CPU_MALLOC_ENV`: glibc otherwise keeps freed blocks of up to 32 MB resident and hands
  them out again, so a call could peak inside memory an earlier call left behind and be
  under-counted.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from timing import synchronize

#: Environment for a CPU measuring process: every block from 4 KiB up is its own mapping,
#: returned to the system when freed, so that resident memory follows live tensors.
CPU_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4096", "MALLOC_TRIM_THRESHOLD_": "0"}

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{_STATUS} has no {field} line")


def cpu_peak_supported() -> bool:
    """Whether this system can reset and read the peak resident set (Linux ``clear_refs``)."""
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
    except (OSError, RuntimeError):
        return False
    return True


def peak_growth_mib(fn: Callable[[], Any], device: str | torch.device) -> float:
    """MiB by which memory rose above its level before the call, at the call's peak.

    CUDA: allocated tensor memory. CPU: resident memory of the process (see the module
    docstring for the process it needs); raises ``RuntimeError`` where the peak cannot be
    reset (not Linux), see :func:`cpu_peak_supported`.
    """
    if torch.device(device).type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    if not cpu_peak_supported():
        raise RuntimeError(f"cannot reset the peak resident set through {_CLEAR_REFS} (Linux only)")
    _CLEAR_REFS.write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) / 1024
