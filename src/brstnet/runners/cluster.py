"""A connected cluster: its client, the workers the runner waits for, its batch jobs,
and the resources GPU nodes ask its workers for.

Every worker process runs one task at a time; GPU workers declare a ``GPU`` resource
equal to the share of a GPU they own (1, or ``gpu_per_training`` when several trainings
share a GPU, each in its own process), and GPU-tagged nodes ask for that share.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import DaskSettings
from .slurm_jobs import SLURM_LIVE, describe_jobs, slurm_jobs

GPU = "GPU"  # the worker resource GPU-tagged nodes ask for
# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's
# adaptive mmap threshold: every large tensor is then mmapped and unmapped, and a resnet18
# training step on CPU ran at 6.8 images/s in such a worker against 10.0 without it (and
# 10.9 in the main process, same machine, same minute). None unsets it (Dask's own idiom).
TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
TRIM_ENV = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_"


@dataclass
class Cluster:
    """A connected client and what the runner needs to know about its workers."""

    client: Any
    description: str
    expected_workers: int | None  # None: whatever connects (an existing scheduler)
    torch_threads: int | None
    # the batch jobs the cluster submitted (their ids, as the scheduler knows them); None
    # for clusters without jobs
    jobs: Callable[[], list[str]] | None = None
    _seen: dict[str, None] = field(default_factory=dict, repr=False)

    def job_ids(self) -> list[str]:
        """Every job submitted so far, including those that have ended."""
        if self.jobs is not None:
            self._seen.update(dict.fromkeys(self.jobs()))
        return list(self._seen)

    def lost(self) -> str | None:
        """Why no node can run any more (every job of the run has ended and no worker
        is left), or None while the cluster can still run them."""
        jobs = self.job_ids()
        if not jobs or self.client.scheduler_info(n_workers=-1)["workers"]:
            return None
        states = slurm_jobs(jobs)
        if any(state in SLURM_LIVE for state, _ in states.values()):
            return None
        return f"every SLURM job of this run has ended ({describe_jobs(states)})"


def training_resources(settings: DaskSettings) -> dict[str, float]:
    """The resources a GPU-tagged node asks the scheduler for."""
    return {GPU: settings.gpu_per_training} if settings.uses_gpus() else {}


def cpu_count() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def torch_threads(settings: DaskSettings, cores: int, processes: int) -> int:
    """torch threads per worker process: ``torch_threads``, else the cores shared out."""
    return settings.torch_threads or max(1, cores // max(processes, 1))
