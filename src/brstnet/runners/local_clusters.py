"""The clusters started on this machine: ``distributed.LocalCluster`` (CPU worker
processes) and dask-cuda's ``LocalCUDACluster`` (one worker process per GPU, or
``1 / gpu_per_training`` processes pinned to each GPU when trainings share one).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

from dask_cuda import LocalCUDACluster
from distributed import Client, LocalCluster

from .cluster import GPU, Cluster, cpu_count, torch_threads
from .config import DaskSettings
from .errors import ClusterError

logger = logging.getLogger(__name__)


def visible_gpus() -> int:
    """GPUs this process can see (``CUDA_VISIBLE_DEVICES``, else NVML); 0 without a driver."""
    try:
        # inside the try: a broken NVML binding means no GPU here, not a failed import
        from dask_cuda.utils import get_n_gpus

        return int(get_n_gpus())
    except Exception:  # no NVIDIA driver / NVML on this machine
        return 0


def local(settings: DaskSettings, project_path: Path, where: str) -> tuple[Cluster, Any]:
    """``cluster: local``: CPU worker processes, one task each."""
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
    threads = torch_threads(settings, cpu_count(), n)
    description = f"LocalCluster: {n} worker processes x 1 task, {threads} torch threads each"
    return Cluster(Client(made), description, n, threads), made


def local_cuda(settings: DaskSettings, project_path: Path, where: str) -> tuple[Cluster, Any]:
    """``cluster: local_cuda``: the visible GPUs (``local_cuda.n_gpus`` of them), each
    with ``trainings_per_gpu`` worker processes.

    Raises:
        ClusterError: more GPUs asked for than visible, or none visible.
    """
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
        made = LocalCUDACluster(**kwargs)
    else:
        made = _shared_gpu_cluster(per_gpu, **kwargs)
    n_workers = n_gpus * per_gpu
    threads = torch_threads(settings, cpu_count(), n_workers)
    description = (
        f"LocalCUDACluster: {n_gpus} GPU(s) x {per_gpu} worker process(es), "
        f"{threads} torch threads each"
    )
    return Cluster(Client(made), description, n_workers, threads), made


class SharedGPUCluster(LocalCUDACluster):
    """A LocalCUDACluster with ``per_gpu`` worker processes pinned to each GPU: dask-cuda
    names one worker per device; the extra ones are ``<device>-<j>``, copies of that
    device's spec (same CUDA_VISIBLE_DEVICES)."""

    def __init__(self, *args: Any, per_gpu: int, **kwargs: Any) -> None:
        self.per_gpu = per_gpu  # read while the parent starts the workers
        super().__init__(*args, **kwargs)

    def new_worker_spec(self) -> dict:
        if any(d not in self.worker_spec for d in self.cuda_visible_devices):
            return super().new_worker_spec()
        for j in range(1, self.per_gpu):
            for device in self.cuda_visible_devices:
                if f"{device}-{j}" not in self.worker_spec:
                    return {f"{device}-{j}": copy.deepcopy(self.worker_spec[device])}
        raise ValueError("every GPU already has its worker processes")


def _shared_gpu_cluster(per_gpu: int, **kwargs: Any) -> SharedGPUCluster:
    """A :class:`SharedGPUCluster` on the first ``n_workers`` visible GPUs."""
    n_gpus = kwargs.pop("n_workers")
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = devices.split(",")[:n_gpus] if devices else list(range(n_gpus))
    return SharedGPUCluster(
        CUDA_VISIBLE_DEVICES=devices, n_workers=n_gpus * per_gpu, per_gpu=per_gpu, **kwargs
    )
