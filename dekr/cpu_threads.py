"""The CPU thread policy: how torch's OpenMP threads wait, and how many compute, so that training,
evaluation and inference on CPU cores shared with other jobs slow down by their share instead of
collapsing.

torch's Linux wheels run their CPU kernels on GNU OpenMP (libgomp), whose threads spin for a while
at every barrier before they sleep. When another job holds one of the cores, the thread sharing it
runs in turns with that job while its partner spins through its own time slices waiting for it: on
2 cores the demo's training steps take 3x as long as alone beside one busy loop, and up to 50x beside
two or with other jobs running too (``benchmarks/busy_cpu.py``). The policy has two parts:

* :func:`prefer_passive_waiting`: ``OMP_WAIT_POLICY=PASSIVE`` in the environment, so that a waiting
  thread sleeps at once and leaves its core to the thread it waits for. libgomp reads it once, as it
  loads (at ``import torch``): this must run before torch is imported (``import dekr`` does it), and
  it reaches every child process (DataLoader workers, sweep points). Alone it removes the collapse;
  on idle cores it costs about 10% per step (waking a sleeping thread is slower than finding it spinning).
* :func:`apply_thread_policy`: one intra-op thread per core that other processes leave idle when the
  run starts, never more than this process may use (its CPU affinity and cgroup quota). Beside one
  busy loop on 2 cores, one thread runs the demo's steps faster than two sleeping-when-waiting ones
  (each barrier waits for the thread sharing a core); on idle cores every core is used.

What the user sets wins. ``OMP_NUM_THREADS`` set: both parts leave OpenMP alone. ``OMP_WAIT_POLICY``
or ``GOMP_SPINCOUNT`` set: their waiting is kept. ``DEKR_CPU_THREADS``: ``auto`` (default) the policy,
``off`` torch's own defaults, a number that many threads (with passive waiting). DataLoader workers
compute with one thread each (torch sets it in every worker).
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: The switch: ``auto`` | ``off`` | a thread count.
POLICY_VARIABLE = "DEKR_CPU_THREADS"
#: Variables by which the user sets libgomp's waiting themselves.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: How long :func:`idle_cpus` watches the cores (seconds): 25 scheduler ticks of 10 ms per core.
SAMPLE_SECONDS = 0.25


@dataclass(frozen=True)
class ThreadChoice:
    """What :func:`apply_thread_policy` decided: ``threads`` of ``available`` (torch's count before),
    for ``usable`` CPUs (affinity and quota) of which other processes left ``idle`` idle (None where
    not measured)."""

    threads: int
    available: int
    usable: int | None = None
    idle: float | None = None

    @property
    def reduced(self) -> bool:
        return self.threads < self.available

    def describe(self) -> str:
        """One line: the threads, why, and how to choose them."""
        if self.idle is not None and self.usable is not None:
            why = f"{min(self.idle, self.usable):.1f} of the {self.usable} CPUs this process may use are idle"
        else:
            why = f"this process may use {self.usable} CPU{'s' if self.usable != 1 else ''}"
        how = f"{POLICY_VARIABLE}=N or =off to choose"
        return f"CPU threads: {self.threads} of {self.available} ({why}; {how})"


def policy_setting(environ: Mapping[str, str] = os.environ) -> str | int:
    """``"off"``, ``"auto"`` or a thread count, from ``DEKR_CPU_THREADS`` (``OMP_NUM_THREADS`` set by the
    user means ``"off"``: they chose). A value that is none of these is reported and read as ``auto``."""
    if environ.get("OMP_NUM_THREADS"):
        return "off"
    value = environ.get(POLICY_VARIABLE, "auto").strip().lower() or "auto"
    if value in ("off", "auto"):
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    log.warning("%s=%r is not 'auto', 'off' or a thread count >= 1: using 'auto'", POLICY_VARIABLE, value)
    return "auto"


def prefer_passive_waiting(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` unless the policy is off or the user set the
    waiting (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``); True when set. Takes effect in this process only
    when called before ``import torch`` (libgomp reads it as it loads), in child processes always."""
    if policy_setting(environ) == "off" or any(environ.get(name) for name in WAIT_VARIABLES):
        return False
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by the cgroup's CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), None if unlimited."""
    try:
        # "max 100000" (no quota) or "200000 100000" (2 CPUs)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text().strip()  # "-1": unlimited
            period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1"):
        return None
    return max(1, int(quota) // int(period))


def allowed_cpus() -> set[int]:
    """The CPU numbers this process may run on (its affinity; every CPU where the OS has none)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return set(range(os.cpu_count() or 1))


def usable_cpus() -> int:
    """How many CPUs this process may use at once: its affinity, capped by a cgroup CPU quota (a
    container limited to 2 CPUs on a 64-core host still sees all 64 in its affinity)."""
    return min(len(allowed_cpus()), _cgroup_cpu_limit() or os.cpu_count() or 1)


def _cpu_times(stat: str, cpus: set[int]) -> tuple[int, int]:
    """(idle, total) clock ticks summed over ``cpus`` from the text of ``/proc/stat``. Idle counts
    ``idle`` and ``iowait``; a VM's ``steal`` (the host ran someone else) counts as busy."""
    idle = total = 0
    for line in stat.splitlines():
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle += ticks[3] + ticks[4]
        total += sum(ticks)
    return idle, total


def idle_cpus(cpus: Iterable[int], seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many of ``cpus`` other processes leave idle: the idle share of each over ``seconds`` of
    ``/proc/stat``, summed (this process sleeps meanwhile). None where ``/proc/stat`` is not there."""
    chosen = set(cpus)
    try:
        idle0, total0 = _cpu_times(Path("/proc/stat").read_text(), chosen)
        time.sleep(seconds)
        idle1, total1 = _cpu_times(Path("/proc/stat").read_text(), chosen)
    except OSError:
        return None
    if total1 <= total0:
        return None
    return len(chosen) * (idle1 - idle0) / (total1 - total0)


def choose_threads(usable: int, idle: float | None) -> int:
    """Intra-op threads for ``usable`` cores of which ``idle`` are left idle by others: one per idle
    core (rounded to the nearest), at least 1 and at most ``usable``; ``usable`` when not measured."""
    if idle is None:
        return usable
    return max(1, min(usable, math.floor(idle + 0.5)))


def apply_thread_policy(environ: Mapping[str, str] = os.environ) -> ThreadChoice | None:
    """Set torch's intra-op threads as ``DEKR_CPU_THREADS`` says (see the module docstring); None when
    the policy is off. Logs one INFO line when it uses fewer threads than torch would. The cores are
    watched for :data:`SAMPLE_SECONDS` only when they might be shared (more than one thread)."""
    setting = policy_setting(environ)
    if setting == "off":
        return None
    import torch

    available = torch.get_num_threads()
    if isinstance(setting, int):
        torch.set_num_threads(setting)
        return ThreadChoice(setting, available)
    usable = min(usable_cpus(), available)
    idle = idle_cpus(allowed_cpus()) if usable > 1 else None
    choice = ThreadChoice(choose_threads(usable, idle), available, usable, idle)
    if choice.reduced:
        torch.set_num_threads(choice.threads)
        _log_info(choice.describe())
    return choice


def _log_info(message: str) -> None:
    """``log.info(message)``; where no logging is configured yet (a script's imports, which run before
    its ``main`` configures logging) Python would drop an INFO record, so it goes to stderr alone."""
    if log.hasHandlers():
        log.info(message)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, message, (), None))
