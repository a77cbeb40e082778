"""Start (or reach) the Dask cluster a run asks for, and check it before any node runs.

One builder per ``cluster`` kind, each a library cluster: ``distributed.LocalCluster``,
dask-cuda's ``LocalCUDACluster``, dask-jobqueue's ``SLURMCluster``, or the scheduler at
``address``. Every worker process runs one task at a time; GPU workers declare a ``GPU``
resource equal to the share of a GPU they own (1, or ``gpu_per_training`` when several
trainings share a GPU, each in its own process), and GPU-tagged nodes ask for that share.
"""

from __future__ import annotations

import copy
import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .config import DaskSettings

logger = logging.getLogger(__name__)

GPU = "GPU"  # the worker resource GPU-tagged nodes ask for
# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's
# adaptive mmap threshold: every large tensor is then mmapped and unmapped, and a resnet18
# training step on CPU ran at 6.8 images/s in such a worker against 10.0 without it (and
# 10.9 in the main process, same machine, same minute). None unsets it (Dask's own idiom).
TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
TRIM_ENV = "DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_"


class ClusterError(RuntimeError):
    """The configured cluster cannot run this pipeline (the message says what to change)."""


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


def visible_gpus() -> int:
    """GPUs this process can see (``CUDA_VISIBLE_DEVICES``, else NVML); 0 without a driver."""
    try:
        from dask_cuda.utils import get_n_gpus

        return int(get_n_gpus())
    except Exception:  # no NVIDIA driver / NVML on this machine
        return 0


def training_resources(settings: DaskSettings) -> dict[str, float]:
    """The resources a GPU-tagged node asks the scheduler for."""
    return {GPU: settings.gpu_per_training} if settings.uses_gpus() else {}


@contextmanager
def open_cluster(settings: DaskSettings, *, project_path: Path, where: str) -> Iterator[Cluster]:
    """Start or reach the cluster, wait for its workers and check them; close on exit.

    Args:
        settings: The validated Dask settings.
        project_path: The Kedro project; every worker must see it (shared filesystem).
        where: Where the settings come from, for error messages (e.g. conf/base/dask.yml).

    Raises:
        ClusterError: before any node runs, saying which setting to change.
    """
    builders = {
        "local": _local,
        "local_cuda": _local_cuda,
        "slurm": _slurm,
        "address": _address,
    }
    import dask
    import distributed  # noqa: F401 - registers its config defaults, which TRIM edits

    chatter = logging.getLogger("distributed")  # its INFO lines would drown the run's
    level = chatter.level
    chatter.setLevel(max(logging.WARNING, level))
    # a nanny started earlier in this process with Dask's defaults has put the variable in
    # os.environ, whence every later process (our workers, sbatch jobs) would inherit it
    leaked = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    inherited = leaked is not None and leaked == str(dask.config.get(TRIM, None))
    if inherited:
        del os.environ["MALLOC_TRIM_THRESHOLD_"]
    try:
        with dask.config.set({TRIM: None}):  # read by each Nanny when it is created
            cluster, made = builders[settings.cluster](settings, project_path, where)
        try:
            _wait_for_workers(cluster, settings, where)
            check_workers(cluster.client, settings, project_path=project_path, where=where)
            yield cluster
        finally:
            cluster.client.close()
            if made is not None:
                made.close()
    finally:
        chatter.setLevel(level)
        if inherited:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = leaked


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _threads(settings: DaskSettings, cores: int, processes: int) -> int:
    return settings.torch_threads or max(1, cores // max(processes, 1))


def _connect(cluster: Any) -> Any:
    from distributed import Client

    return Client(cluster)


def _local(settings: DaskSettings, project_path: Path, where: str) -> tuple[Cluster, Any]:
    from distributed import LocalCluster

    n = settings.local.n_workers
    if settings.gpu_per_training > 0 and settings.gpu_per_training < 1:
        logger.info("cluster: local has CPU workers only; gpu_per_training is not used")
    made = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=settings.dashboard_address,
        memory_limit=settings.local.memory_limit,
        scheduler_kwargs={"allowed_failures": settings.retries},
    )
    threads = _threads(settings, _cpu_count(), n)
    description = f"LocalCluster: {n} worker processes x 1 task, {threads} torch threads each"
    return Cluster(_connect(made), description, n, threads), made


def _local_cuda(settings: DaskSettings, project_path: Path, where: str) -> tuple[Cluster, Any]:
    visible = visible_gpus()
    asked = settings.local_cuda.n_gpus
    shown = f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}"
    if asked is not None and asked > visible:
        raise ClusterError(
            f"local_cuda.n_gpus: {asked} ({where}) asks for more GPUs than the {visible} "
            f"visible here ({shown}); lower it, or leave it null for every visible GPU"
        )
    if visible == 0:
        raise ClusterError(
            f"cluster: local_cuda ({where}) but this machine has no visible GPU ({shown}); "
            "use cluster: local on a CPU machine"
        )
    n_gpus = asked or visible
    per_gpu = settings.trainings_per_gpu if settings.uses_gpus() else 1
    kwargs = dict(
        n_workers=n_gpus,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=settings.dashboard_address,
        memory_limit=settings.local_cuda.memory_limit,
        scheduler_kwargs={"allowed_failures": settings.retries},
        resources={GPU: 1.0 / per_gpu},
    )
    if per_gpu == 1:
        from dask_cuda import LocalCUDACluster

        made = LocalCUDACluster(**kwargs)
    else:
        made = _shared_gpu_cluster(per_gpu, **kwargs)
    n_workers = n_gpus * per_gpu
    threads = _threads(settings, _cpu_count(), n_workers)
    description = (
        f"LocalCUDACluster: {n_gpus} GPU(s) x {per_gpu} worker process(es), "
        f"{threads} torch threads each"
    )
    return Cluster(_connect(made), description, n_workers, threads), made


def _shared_gpu_cluster(per_gpu: int, **kwargs: Any) -> Any:
    """A LocalCUDACluster with ``per_gpu`` worker processes pinned to each GPU."""
    from dask_cuda import LocalCUDACluster

    class SharedGPUCluster(LocalCUDACluster):
        """dask-cuda names one worker per device; the extra ones are ``<device>-<j>``,
        copies of that device's spec (same CUDA_VISIBLE_DEVICES)."""

        def new_worker_spec(self) -> dict:
            if any(d not in self.worker_spec for d in self.cuda_visible_devices):
                return super().new_worker_spec()
            for j in range(1, per_gpu):
                for device in self.cuda_visible_devices:
                    if f"{device}-{j}" not in self.worker_spec:
                        return {f"{device}-{j}": copy.deepcopy(self.worker_spec[device])}
            raise ValueError("every GPU already has its worker processes")

    n_gpus = kwargs.pop("n_workers")
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = devices.split(",")[:n_gpus] if devices else list(range(n_gpus))
    return SharedGPUCluster(CUDA_VISIBLE_DEVICES=devices, n_workers=n_gpus * per_gpu, **kwargs)


def _slurm(settings: DaskSettings, project_path: Path, where: str) -> tuple[Cluster, Any]:
    if shutil.which("sbatch") is None:
        raise ClusterError(
            f"cluster: slurm ({where}) but sbatch is not on PATH: run kedro on a SLURM login "
            "node, or use cluster: address with a scheduler you started"
        )
    made = make_slurm_cluster(settings, project_path)
    made.scale(jobs=settings.slurm.jobs)
    s = settings.slurm
    processes = slurm_processes(settings)
    threads = _threads(settings, s.cores, processes)
    description = (
        f"SLURMCluster: {s.jobs} job(s) x {processes} worker process(es) on {s.gpus} GPU(s), "
        f"{threads} torch threads each (queue {s.queue or 'default'})"
    )
    return Cluster(
        _connect(made), description, s.jobs * processes, threads, partial(_job_ids, made)
    ), made


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


def _job_ids(made: Any) -> list[str]:
    return [str(j.job_id) for j in list(made.workers.values()) if getattr(j, "job_id", None)]


def slurm_processes(settings: DaskSettings) -> int:
    """Worker processes per SLURM job: one per GPU share (one per job on CPU)."""
    s = settings.slurm
    if s.gpus == 0:
        return 1
    return s.gpus if s.gpus > 1 else settings.trainings_per_gpu


def make_slurm_cluster(settings: DaskSettings, project_path: Path) -> Any:
    """The ``SLURMCluster`` for these settings (no job submitted yet).

    One worker process per GPU: a job with several GPUs runs ``dask cuda worker``, which
    pins one process to each; a one-GPU job runs ``1 / gpu_per_training`` plain workers
    on it. Each worker runs one task at a time; the job books ``cores`` CPUs.
    """
    from dask_jobqueue import SLURMCluster

    s = settings.slurm
    processes = slurm_processes(settings)
    extra_args: list[str] = []
    if settings.uses_gpus():
        share = 1.0 / (settings.trainings_per_gpu if s.gpus == 1 else 1)
        extra_args = ["--resources", f"{GPU}={share:g}"]
    directives = ([f"--gres=gpu:{s.gpus}"] if s.gpus else []) + list(s.job_extra_directives)
    prologue = [
        f"cd {shlex.quote(str(project_path))}",
        f"export {TRIM_ENV}=None",  # as for local workers (TRIM above)
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


def _address(settings: DaskSettings, project_path: Path, where: str) -> tuple[Cluster, Any]:
    from distributed import Client

    try:
        client = Client(settings.address, timeout=settings.connect_timeout_s)
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {settings.address} (address in {where}): "
            f"{exc}. Start it (dask scheduler), check host and port, or use cluster: local"
        ) from None
    description = (
        f"the scheduler at {settings.address} (its own allowed-failures applies; "
        "retries is not sent)"
    )
    return Cluster(client, description, None, settings.torch_threads), None


def dashboard_link(client: Any, settings: DaskSettings) -> str:
    """The dashboard's address as bound: Dask prints the scheduler's host, but a cluster
    started here binds the dashboard to ``dashboard_address`` (127.0.0.1 by default)."""
    from urllib.parse import urlsplit

    link = str(client.dashboard_link)
    host = settings.dashboard_address.rpartition(":")[0]
    parts = urlsplit(link)
    if settings.cluster == "address" or not host or parts.port is None:
        return link
    return parts._replace(netloc=f"{host}:{parts.port}").geturl()


def _wait_for_workers(cluster: Cluster, settings: DaskSettings, where: str) -> None:
    """Wait for every worker we started (for one, on a scheduler someone else runs)."""
    n = cluster.expected_workers if settings.cluster != "slurm" else 1
    timeout = settings.wait_for_workers_s
    if settings.cluster == "slurm":
        logger.info("waiting for the first SLURM job to start (squeue shows the queue)")
    try:
        cluster.client.wait_for_workers(n or 1, timeout=timeout)
    except TimeoutError:
        if cluster.jobs is not None:
            jobs = describe_jobs(slurm_jobs(cluster.job_ids()))
            raise ClusterError(
                f"no SLURM job started within {timeout:g} s ({jobs}); "
                f"raise wait_for_workers_s in {where} (null waits for the queue), or check the "
                "partition and limits with squeue / sinfo. The jobs are cancelled"
            ) from None
        raise ClusterError(
            f"no{'t all' if n and n > 1 else ''} Dask worker(s) connected within {timeout:g} s "
            f"({cluster.description}); raise wait_for_workers_s in {where} or start workers"
        ) from None


def check_workers(client: Any, settings: DaskSettings, *, project_path: Path, where: str) -> None:
    """Refuse a cluster that cannot run the pipeline, before any node runs.

    Every worker must see the project folder (data/ on a shared filesystem); when GPU
    nodes ask for a GPU share, some worker must offer it, and no worker may be able to
    run two GPU trainings in one process (they would share torch's global state).

    Raises:
        ClusterError: naming the workers and the setting to change.
    """
    workers = client.scheduler_info(n_workers=-1)["workers"]
    sees = client.run(os.path.isdir, str(project_path))
    blind = sorted(address for address, ok in sees.items() if not ok)
    if blind:
        raise ClusterError(
            f"worker(s) {', '.join(blind)} cannot see the project at {project_path}: the "
            "project (and its data/) must be on a filesystem every worker mounts"
        )
    needs = training_resources(settings)
    if not needs:
        return
    share = needs[GPU]
    offered = {a: w.get("resources", {}).get(GPU, 0.0) for a, w in workers.items()}
    if not any(v >= share - 1e-9 for v in offered.values()):
        raise ClusterError(
            f"GPU nodes ask for {GPU}={share:g} (gpu_per_training in {where}) but no worker "
            f"offers it (worker resources: {offered or 'no workers'}); start GPU workers "
            f"with `dask cuda worker {settings.address or '<scheduler>'} --resources "
            f"{GPU}=1`, or set gpu_per_training: 0 for CPU workers"
        )
    shared = sorted(
        a
        for a, w in workers.items()
        if offered[a] >= 2 * share - 1e-9 and int(w.get("nthreads", 1)) > 1
    )
    if shared:
        raise ClusterError(
            f"worker(s) {', '.join(shared)} could run two GPU trainings in one process "
            f"({GPU}={offered[shared[0]]:g} with several threads, gpu_per_training {share:g} "
            f"in {where}); start one single-threaded worker process per training "
            "(--nthreads 1)"
        )
