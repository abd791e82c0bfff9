"""dekr.cpu_threads: what the user sets wins, passive waiting as a default only, the thread count
chosen from the idle cores, and the idle cores read from /proc/stat."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dekr import cpu_threads
from dekr.cpu_threads import ThreadChoice, choose_threads, policy_setting, prefer_passive_waiting

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("environ, expected", [
    ({}, "auto"),
    ({"DEKR_CPU_THREADS": "auto"}, "auto"),
    ({"DEKR_CPU_THREADS": "OFF"}, "off"),
    ({"DEKR_CPU_THREADS": "3"}, 3),
    ({"OMP_NUM_THREADS": "4"}, "off"),  # the user chose the threads
    ({"OMP_NUM_THREADS": "4", "DEKR_CPU_THREADS": "2"}, "off"),
    ({"OMP_NUM_THREADS": ""}, "auto"),  # set but empty: libgomp ignores it too
])
def test_policy_setting(environ, expected):
    assert policy_setting(environ) == expected


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_setting_is_reported_and_read_as_auto(value, caplog):
    with caplog.at_level(logging.WARNING, logger="dekr.cpu_threads"):
        assert policy_setting({"DEKR_CPU_THREADS": value}) == "auto"
    assert f"DEKR_CPU_THREADS={value!r} is not 'auto', 'off' or a thread count" in caplog.text


def test_passive_waiting_is_a_default_the_user_overrides():
    environ: dict[str, str] = {}
    assert prefer_passive_waiting(environ) and environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    for user in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "100000"}, {"OMP_NUM_THREADS": "2"},
                 {"DEKR_CPU_THREADS": "off"}):
        environ = dict(user)
        assert not prefer_passive_waiting(environ)
        assert environ == user  # nothing added, nothing changed
    environ = {"DEKR_CPU_THREADS": "1"}
    assert prefer_passive_waiting(environ) and environ["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize("usable, idle, expected", [
    (2, 2.0, 2),    # an idle machine: every core
    (2, 1.6, 2),
    (2, 1.0, 1),    # one competing job on 2 cores: the free one
    (2, 0.0, 1),    # every core busy: still one thread
    (4, 2.4, 2),
    (2, 7.5, 2),    # a bigger host than the quota: never more than usable
    (2, None, 2),   # not measured: every usable core
])
def test_choose_threads(usable, idle, expected):
    assert choose_threads(usable, idle) == expected


def test_cpu_times_sum_the_allowed_cpus():
    stat = ("cpu  900 0 100 1000 0 0 0 0 0 0\n"
            "cpu0 100 0 50 800 50 0 0 0 0 0\n"
            "cpu1 700 0 40 100 0 0 0 60 0 0\n"   # steal (60) counts as busy
            "cpu2 100 0 10 100 0 0 0 0 0 0\n"
            "intr 12345 0 0\nctxt 999\n")
    assert cpu_threads._cpu_times(stat, {0}) == (850, 1000)
    assert cpu_threads._cpu_times(stat, {0, 1}) == (950, 1900)
    assert cpu_threads._cpu_times(stat, {5}) == (0, 0)


def test_idle_cpus_reads_the_machine():
    cpus = cpu_threads.allowed_cpus()
    idle = cpu_threads.idle_cpus(cpus, seconds=0.1)
    if not Path("/proc/stat").exists():
        assert idle is None
    else:
        assert idle is not None and 0.0 <= idle <= len(cpus) + 1e-9
    assert 1 <= cpu_threads.usable_cpus() <= len(cpus)


def test_thread_choice_says_why_and_how_to_choose():
    choice = ThreadChoice(threads=1, available=2, usable=2, idle=0.94)
    assert choice.reduced and not ThreadChoice(2, 2, 2, 2.0).reduced
    assert choice.describe() == ("CPU threads: 1 of 2 (0.9 of the 2 CPUs this process may use are idle; "
                                 "DEKR_CPU_THREADS=N or =off to choose)")
    quota = ThreadChoice(threads=2, available=64, usable=2, idle=60.0)  # a cgroup quota on a big host
    assert quota.describe().startswith("CPU threads: 2 of 64 (2.0 of the 2 CPUs this process may use are")
    assert ThreadChoice(1, 64, 1).describe().startswith("CPU threads: 1 of 64 (this process may use 1 CPU;")


def test_apply_thread_policy_obeys_the_user():
    before = torch.get_num_threads()
    try:
        assert cpu_threads.apply_thread_policy({"OMP_NUM_THREADS": "3", "DEKR_CPU_THREADS": "1"}) is None
        assert cpu_threads.apply_thread_policy({"DEKR_CPU_THREADS": "off"}) is None
        assert torch.get_num_threads() == before
        choice = cpu_threads.apply_thread_policy({"DEKR_CPU_THREADS": "1"})
        assert choice == ThreadChoice(1, before) and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_import_dekr_sets_passive_waiting_before_torch_loads():
    """In a fresh interpreter: ``import dekr`` sets the default and torch is not loaded yet (libgomp
    reads the variable as torch loads it); the user's own value is kept."""
    code = "import os, sys, dekr; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    for extra, expected in (({}, "PASSIVE False"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE False"),
                            ({"OMP_NUM_THREADS": "2"}, "None False")):
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True,
                             text=True, check=True, timeout=60)
        assert out.stdout.strip() == expected


def test_the_reduced_threads_line_reaches_stderr_before_logging_is_configured():
    """A script applies the policy in its imports, before its ``main`` configures logging: the INFO
    line is still printed (Python alone would drop it)."""
    code = ("import logging; from dekr import cpu_threads; "
            "cpu_threads._log_info(cpu_threads.ThreadChoice(1, 2, 2, 0.5).describe())")
    out = subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stderr.startswith("INFO dekr.cpu_threads: CPU threads: 1 of 2 (")


def test_auto_uses_the_idle_cores_and_logs_only_a_reduction(caplog):
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="dekr.cpu_threads"):
            choice = cpu_threads.apply_thread_policy({})
        assert choice is not None and 1 <= choice.threads <= min(cpu_threads.usable_cpus(), before)
        assert torch.get_num_threads() == choice.threads
        assert (choice.describe() in caplog.text) == choice.reduced
    finally:
        torch.set_num_threads(before)
