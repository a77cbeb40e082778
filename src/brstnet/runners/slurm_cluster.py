"""``cluster: slurm``: dask-jobqueue's ``SLURMCluster``, one worker process per GPU (share).

One worker process per GPU: a job with several GPUs runs ``dask cuda worker``, which
pins one process to each; a one-GPU job runs ``1 / gpu_per_training`` plain workers on
it. Each worker runs one task at a time; the job books ``cores`` CPUs.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from functools import partial
from pathlib import Path
from typing import Any

from dask_jobqueue import SLURMCluster
from distributed import Client

from .cluster import GPU, TRIM_ENV, Cluster, torch_threads
from .config import DaskSettings
from .errors import ClusterError
from .slurm_jobs import job_ids


def slurm(settings: DaskSettings, project_path: Path, where: str) -> tuple[Cluster, Any]:
    """Submit ``slurm.jobs`` jobs (their workers connect as the jobs start).

    Raises:
        ClusterError: sbatch is not on PATH (not a SLURM login node).
    """
    if shutil.which("sbatch") is None:
        raise ClusterError(
            f"cluster: slurm ({where}) but sbatch is not on PATH: run kedro on a SLURM login "
            "node, or use cluster: address with a scheduler you started"
        )
    made = make_slurm_cluster(settings, project_path)
    made.scale(jobs=settings.slurm.jobs)
    s = settings.slurm
    processes = slurm_processes(settings)
    threads = torch_threads(settings, s.cores, processes)
    description = (
        f"SLURMCluster: {s.jobs} job(s) x {processes} worker process(es) on {s.gpus} GPU(s), "
        f"{threads} torch threads each (queue {s.queue or 'default'})"
    )
    return Cluster(
        Client(made), description, s.jobs * processes, threads, partial(job_ids, made)
    ), made


def slurm_processes(settings: DaskSettings) -> int:
    """Worker processes per SLURM job: one per GPU share (one per job on CPU)."""
    s = settings.slurm
    if s.gpus == 0:
        return 1
    return s.gpus if s.gpus > 1 else settings.trainings_per_gpu


def make_slurm_cluster(settings: DaskSettings, project_path: Path) -> Any:
    """The ``SLURMCluster`` for these settings (no job submitted yet; see the module
    docstring for its worker processes)."""
    s = settings.slurm
    processes = slurm_processes(settings)
    extra_args: list[str] = []
    if settings.uses_gpus():
        share = 1.0 / (settings.trainings_per_gpu if s.gpus == 1 else 1)
        extra_args = ["--resources", f"{GPU}={share:g}"]
    directives = ([f"--gres=gpu:{s.gpus}"] if s.gpus else []) + list(s.job_extra_directives)
    prologue = [
        f"cd {shlex.quote(str(project_path))}",
        f"export {TRIM_ENV}=None",  # as for local workers (brstnet.runners.cluster.TRIM)
        *s.job_script_prologue,
    ]
    options: dict[str, Any] = dict(
        queue=s.queue,
        account=s.account,
        cores=processes,  # one thread per worker process
        processes=processes,
        job_cpu=s.cores,
        memory=s.memory,
        walltime=s.walltime,
        job_extra_directives=directives,
        job_script_prologue=prologue,
        worker_extra_args=extra_args,
        python=sys.executable,
        interface=s.interface,
        local_directory=s.local_directory,
        log_directory=s.log_directory,
        scheduler_options={
            "dashboard_address": settings.dashboard_address,
            "allowed_failures": settings.retries,
        },
    )
    if s.gpus > 1:
        options["worker_command"] = "dask cuda worker"
    return SLURMCluster(**options)
