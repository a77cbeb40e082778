"""A real one-node SLURM cluster on this machine, for the tests and for people.

Debian's packages (slurm-wlm 22.05: slurmctld, slurmd, the client commands; munge for
authentication), configured as the smallest real cluster: one node (this machine's
cores and memory) on 127.0.0.1, one partition, no cgroups (process tracking by
/proc), no accounting database (finished jobs go to a job-completion log,
``jobcomp/filetxt``). The daemons run as root, as the packages' services do.

    python -m tests.slurm up [--dir .slurm]    # `make slurm-up`; prints the SLURM_CONF line
    python -m tests.slurm down [--dir .slurm]  # `make slurm-down`

The tests start their own in a temporary folder (``tests/runners/test_slurm.py``), on
free ports, and stop it by its process ids; they skip, saying why, only where the
packages cannot be installed (not root, no sudo, no package index).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: Debian packages of the cluster, and the commands each brings.
PACKAGES = {
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "slurm-client": "sbatch",
    "munge": "munged",
}
SBIN = ("/usr/sbin", "/sbin")
MUNGE_SOCKET_DIR = Path("/run/munge")
PARTITION = "debug"


def _which(command: str) -> str | None:
    return shutil.which(command, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def missing_packages() -> list[str]:
    return [package for package, command in PACKAGES.items() if _which(command) is None]


def install() -> str | None:
    """Install the packages that are missing; the reason when they cannot be, else None."""
    missing = missing_packages()
    if not missing:
        return None
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and shutil.which("sudo") is None:
        return f"SLURM packages {missing} are not installed and this user is not root (no sudo)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [*sudo, "apt-get", "update", "-qq"],
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"cannot install SLURM ({' '.join(command)}): {tail[0]}"
    still = missing_packages()
    return f"SLURM packages {still} are still missing after apt-get install" if still else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _munge_works() -> bool:
    if _which("munge") is None:
        return False
    encode = subprocess.run(["munge", "-n"], capture_output=True)
    if encode.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=encode.stdout, capture_output=True).returncode == 0


def start_munge() -> int | None:
    """Start munged as the munge user unless one answers; its pid when started here."""
    if _munge_works():
        return None
    MUNGE_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_SOCKET_DIR, "munge", "munge")
    pidfile = MUNGE_SOCKET_DIR / "munged.pid"
    runas = ["runuser", "-u", "munge", "--"] if os.geteuid() == 0 else ["sudo", "-n", "-u", "munge"]
    subprocess.run([*runas, _which("munged") or "munged"], check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while not _munge_works():
        if time.monotonic() > deadline:
            raise RuntimeError("munged started but `munge -n | unmunge` still fails")
        time.sleep(0.1)
    return int(pidfile.read_text()) if pidfile.is_file() else None


@dataclass
class SlurmCluster:
    """A running one-node cluster: its folder (config, state, logs, job-completion log)."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def jobcomp(self) -> Path:
        return self.root / "jobcomp.txt"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this cluster (sbatch, squeue, dask-jobqueue)."""
        return {"SLURM_CONF": str(self.conf)}

    def command(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            list(args), env={**os.environ, **self.env}, capture_output=True, text=True
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{shlex.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def queue(self) -> list[dict[str, str]]:
        """Jobs in squeue: id, state, reason, name."""
        out = self.command("squeue", "-h", "-o", "%i|%T|%r|%j")
        keys = ("id", "state", "reason", "name")
        return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines() if line]

    def completed_jobs(self) -> list[dict[str, str]]:
        """The job-completion log: one dict per finished job (JobId, JobState, ...)."""
        if not self.jobcomp.is_file():
            return []
        jobs = []
        for line in self.jobcomp.read_text().splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if fields:
                jobs.append(fields)
        return jobs

    def node_state(self) -> str:
        return self.command("sinfo", "-h", "-N", "-o", "%T").strip()

    def pids(self) -> dict[str, int]:
        """The daemons started for this cluster (munged only when it started it)."""
        out = {}
        for daemon in ("slurmctld", "slurmd", "munged"):
            pidfile = self.root / f"{daemon}.pid"
            if pidfile.is_file() and pidfile.read_text().strip():
                out[daemon] = int(pidfile.read_text())
        return out

    def running(self) -> bool:
        pids = self.pids()
        return all(d in pids and _alive(pids[d]) for d in ("slurmctld", "slurmd"))

    def stop(self) -> None:
        """Cancel every job, then stop slurmd, slurmctld and (if it started it) munged by
        their process ids."""
        if self.running():
            self.command("scancel", "--full", "-p", PARTITION, check=False)
            deadline = time.monotonic() + 30
            while self.queue() and time.monotonic() < deadline:
                time.sleep(0.5)
        for daemon in ("slurmd", "slurmctld", "munged"):
            pid = self.pids().get(daemon)
            if pid is None or not _alive(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            (self.root / f"{daemon}.pid").unlink(missing_ok=True)


def write_config(root: Path) -> Path:
    """slurm.conf for one node (this machine) on free loopback ports."""
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = f"""\
# a one-node SLURM cluster for brstnet's tests (tests/slurm.py)
ClusterName=brstnet
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
# no cgroups: processes tracked through /proc, no task confinement
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no accounting database on one node: finished jobs are written here
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
MinJobAge=300
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    path = root / "slurm.conf"
    path.write_text(conf)
    return path


def start(root: Path, *, timeout_s: float = 60) -> SlurmCluster:
    """Start munged (unless running), slurmctld and slurmd with a fresh config in
    ``root``; return once ``sinfo`` shows the node idle.

    Raises:
        RuntimeError: a daemon did not come up (the message holds its log's tail).
    """
    root = Path(root).resolve()
    cluster = SlurmCluster(root)
    if cluster.running():
        return cluster
    conf = write_config(root)
    munged = start_munge()
    if munged is not None:
        (root / "munged.pid").write_text(str(munged))
    for daemon in ("slurmctld", "slurmd"):
        done = subprocess.run(
            [_which(daemon) or daemon, "-f", str(conf), *(["-c"] if daemon == "slurmctld" else [])],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            cluster.stop()
            raise RuntimeError(
                f"{daemon} did not start: {done.stderr.strip()} {_tail(root, daemon)}"
            )
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        try:
            state = cluster.node_state()
        except RuntimeError:
            state = ""
        if state == "idle":
            return cluster
        time.sleep(0.5)
    cluster.stop()
    raise RuntimeError(
        f"the SLURM node is {state or 'not answering'} after {timeout_s:g} s "
        f"{_tail(root, 'slurmctld')} {_tail(root, 'slurmd')}"
    )


def _tail(root: Path, daemon: str) -> str:
    log = root / f"{daemon}.log"
    lines = log.read_text(errors="replace").splitlines()[-5:] if log.is_file() else []
    return f"({daemon}.log: {' | '.join(lines) or 'empty'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a one-node SLURM cluster on this machine")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=Path(".slurm"), help="config and state")
    args = parser.parse_args(argv)
    cluster = SlurmCluster(args.dir.resolve())
    if args.action == "down":
        cluster.stop()
        print(f"SLURM cluster in {cluster.root} stopped")  # noqa: T201 - a command line
        return 0
    reason = install()
    if reason:
        print(reason, file=sys.stderr)  # noqa: T201
        return 1
    cluster = start(args.dir)
    print(f"SLURM cluster up (node idle); to use it:\n  export SLURM_CONF={cluster.conf}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
