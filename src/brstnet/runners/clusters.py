"""Start (or reach) the Dask cluster a run asks for, and check it before any node runs.

One builder per ``cluster`` kind, each a library cluster: ``distributed.LocalCluster``,
dask-cuda's ``LocalCUDACluster`` (:mod:`brstnet.runners.local_clusters`), dask-jobqueue's
``SLURMCluster`` (:mod:`brstnet.runners.slurm_cluster`), or the scheduler at ``address``.
What GPU workers offer and GPU nodes ask for: :mod:`brstnet.runners.cluster`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dask
from distributed import Client  # also registers distributed's config, which TRIM edits

from .cluster import GPU, TRIM, Cluster, training_resources
from .config import DaskSettings
from .errors import ClusterError
from .local_clusters import local, local_cuda
from .slurm_cluster import slurm
from .slurm_jobs import describe_jobs, slurm_jobs

__all__ = ["BUILDERS", "check_workers", "dashboard_link", "open_cluster", "training_resources"]

logger = logging.getLogger(__name__)


def address(settings: DaskSettings, project_path: Path, where: str) -> tuple[Cluster, Any]:
    """``cluster: address``: the scheduler someone else runs (its workers are theirs).

    Raises:
        ClusterError: the scheduler cannot be reached.
    """
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


#: The builder of each ``cluster`` kind: (settings, project path, where) -> (the
#: connected :class:`Cluster`, the cluster object to close, or None).
BUILDERS = {"local": local, "local_cuda": local_cuda, "slurm": slurm, "address": address}


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
            cluster, made = BUILDERS[settings.cluster](settings, project_path, where)
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


def dashboard_link(client: Any, settings: DaskSettings) -> str:
    """The dashboard's address as bound: Dask prints the scheduler's host, but a cluster
    started here binds the dashboard to ``dashboard_address`` (127.0.0.1 by default)."""
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
