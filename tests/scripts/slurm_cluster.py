"""A real one-node SLURM cluster on localhost for the tests (Debian's slurm-wlm + munge).

``slurm_cluster`` (pytest fixture, module scope): installs the packages when ``slurmctld`` is
missing (skips only if that is impossible), writes a munge key and ``slurm.conf`` into a temporary
folder, starts ``munged``, ``slurmctld`` and ``slurmd`` in the foreground as child processes, and
at teardown cancels its jobs and stops exactly those processes by PID. Client commands need the
environment of :attr:`LocalSlurm.env` (``SLURM_CONF``).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

PACKAGES = ["slurm-wlm", "munge"]


def ensure_installed() -> str | None:
    """None when slurmctld/slurmd/munged are available (installing them if needed), else the reason."""
    if all(shutil.which(b) or Path(f"/usr/sbin/{b}").exists() for b in ("slurmctld", "slurmd", "munged")):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "slurm-wlm is not installed and cannot be installed here (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            return f"installing {PACKAGES} failed: {' '.join(cmd)}: {result.stderr[-500:]}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    def __init__(self, root: Path, cpus: int = 2) -> None:
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus
        self.procs: list[subprocess.Popen] = []
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for name in list(self.env):
            if name.startswith(("SLURM_", "SBATCH_", "SRUN_")) and name != "SLURM_CONF":
                del self.env[name]

    def _sbin(self, name: str) -> str:
        return shutil.which(name) or f"/usr/sbin/{name}"

    def start(self) -> None:
        r = self.root
        for d in ("state", "spool", "log", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.munge_socket = r / "munge" / "munge.socket"
        self._spawn([self._sbin("munged"), "--foreground", "--force", f"--key-file={key}",
                     f"--socket={self.munge_socket}", f"--pid-file={r / 'munge' / 'munged.pid'}",
                     f"--log-file={r / 'log' / 'munged.log'}", f"--seed-file={r / 'munge' / 'munged.seed'}"],
                    "munged")
        self._wait_for(lambda: self.munge_socket.exists(), "munged socket", 20)
        ctl_port, d_port = _free_port(), _free_port()
        self.conf.write_text(f"""ClusterName=dekrtest
SlurmctldHost={self.host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
JobRequeue=1
SlurmctldPort={ctl_port}
SlurmdPort={d_port}
KillWait=20
NodeName={self.host} CPUs={self.cpus} RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")
        self._spawn([self._sbin("slurmctld"), "-D", "-f", str(self.conf)], "slurmctld")
        time.sleep(1)
        self._spawn([self._sbin("slurmd"), "-D", "-f", str(self.conf)], "slurmd")
        self._wait_for(self._node_idle, "the node to be idle in sinfo", 60)

    def _spawn(self, cmd: list[str], name: str) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "w")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env))
        time.sleep(0.3)
        if self.procs[-1].poll() is not None:
            raise RuntimeError(f"{name} exited at start: {(self.root / 'log' / f'{name}.stdout').read_text()[-2000:]}")

    def _wait_for(self, condition, what: str, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} died while waiting for {what}; logs in {self.root / 'log'}")
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}; logs in {self.root / 'log'}")

    def _node_idle(self) -> bool:
        out = self.run(["sinfo", "-h", "-o", "%t"], check=False).stdout
        return "idle" in out

    def run(self, cmd: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=kwargs.pop("env", self.env), capture_output=True, text=True, check=check,
                              **kwargs)

    def sbatch(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
        out = self.run(["sbatch", "--parsable", *args], cwd=cwd, env={**self.env, **(env or {})}).stdout
        return out.strip().split(";")[0]

    def job_info(self, job_id: str) -> dict[str, str]:
        out = self.run(["scontrol", "show", "job", "-o", job_id], check=False).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait_state(self, job_id: str, states: set[str], timeout: float) -> dict[str, str]:
        deadline = time.time() + timeout
        info: dict[str, str] = {}
        while time.time() < deadline:
            info = self.job_info(job_id)
            if info.get("JobState") in states:
                return info
            time.sleep(1)
        raise TimeoutError(f"job {job_id} not in {states} after {timeout}s: {info}")

    def stop(self) -> None:
        if any(p.poll() is None for p in self.procs):
            self.run(["scancel", "--full", "--user", "root"], check=False, timeout=30)
            time.sleep(1)
        for p in reversed(self.procs):  # slurmd, slurmctld, munged: by PID, the ones we started
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    reason = ensure_installed()
    if reason:
        pytest.skip(reason)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
