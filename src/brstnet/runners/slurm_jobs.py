"""The SLURM jobs of a run as SLURM sees them: which are still alive, and why they ended.

The runner asks while it waits (``squeue -t all``), so that a run whose jobs have all
ended (time limit, cancelled) stops with their states instead of waiting for ever.
"""

from __future__ import annotations

import subprocess
from typing import Any

#: SLURM job states from which a job may still start or is running.
SLURM_LIVE = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "REQUEUED",
    "RESIZING",
    "SUSPENDED",
}


def slurm_jobs(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """SLURM's state and reason for each job (``squeue -t all``); a job SLURM no longer
    knows (purged after MinJobAge) is ``("ENDED", "no longer known to SLURM")``."""
    out: dict[str, tuple[str, str]] = {}
    if job_ids:
        done = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r"],
            capture_output=True,
            text=True,
        )
        for line in done.stdout.splitlines():
            job, _, rest = line.partition("|")
            state, _, reason = rest.partition("|")
            out[job.strip()] = (state.strip(), reason.strip())
    return {j: out.get(j, ("ENDED", "no longer known to SLURM")) for j in job_ids}


def describe_jobs(states: dict[str, tuple[str, str]]) -> str:
    """``job 12 (TIMEOUT: TimeLimit), job 13 (PENDING: BeginTime)``."""
    shown = []
    for job, (state, reason) in states.items():
        why = f": {reason}" if reason and reason != "None" else ""
        shown.append(f"job {job} ({state}{why})")
    return ", ".join(shown)


def job_ids(made: Any) -> list[str]:
    """The ids of the jobs a dask-jobqueue cluster has submitted (as the scheduler knows
    them)."""
    return [str(j.job_id) for j in list(made.workers.values()) if getattr(j, "job_id", None)]
