"""The Dask runner's settings (``conf/<env>/dask.yml``) as one typed model.

Unknown keys and wrong values are errors that name the key and the file (through
:func:`brstnet.parameter_check.validate_settings`), raised before a cluster starts or a
node runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from brstnet.parameter_check import validate_settings

ClusterKind = Literal["local", "local_cuda", "slurm", "address"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalSettings(_Strict):
    """``cluster: local``: a ``distributed.LocalCluster`` of CPU worker processes."""

    n_workers: int = Field(2, ge=1)
    memory_limit: str | int | float = "auto"  # per worker, as LocalCluster takes it


class LocalCudaSettings(_Strict):
    """``cluster: local_cuda``: dask-cuda's ``LocalCUDACluster``, one worker per GPU
    (``trainings_per_gpu`` workers per GPU when ``gpu_per_training`` < 1)."""

    n_gpus: int | None = Field(None, ge=1)  # None: every visible GPU
    memory_limit: str | int | float = "auto"


class SlurmSettings(_Strict):
    """``cluster: slurm``: dask-jobqueue's ``SLURMCluster``; every job runs one worker
    process per GPU (``dask cuda worker`` when a job has several GPUs)."""

    queue: str | None = None  # #SBATCH -p
    account: str | None = None  # #SBATCH -A
    cores: int = Field(8, ge=1)  # CPU cores per job
    memory: str = "64GB"  # memory per job
    gpus: int = Field(1, ge=0)  # GPUs per job (#SBATCH --gres=gpu:<n>); 0: CPU jobs
    walltime: str = "24:00:00"
    jobs: int = Field(1, ge=1)  # jobs to submit
    job_extra_directives: list[str] = Field(default_factory=list)  # more #SBATCH lines
    job_script_prologue: list[str] = Field(default_factory=list)  # e.g. module load, venv
    interface: str | None = None  # network interface of the workers (e.g. ib0)
    local_directory: str | None = None  # node-local scratch for Dask's spill files
    log_directory: str | None = None  # where SLURM writes the jobs' output


class DaskSettings(_Strict):
    """Everything the Dask runner needs (``conf/base/dask.yml``, overridden per env)."""

    cluster: ClusterKind = "local"
    address: str | None = None  # tcp://host:8786, with cluster: address
    retries: int = Field(2, ge=0)  # re-runs of a task whose worker died
    gpu_per_training: float = Field(1.0, ge=0.0, le=1.0)
    gpu_node_tags: list[str] = Field(default_factory=lambda: ["training"])
    torch_threads: int | None = Field(None, ge=1)  # per worker process; None: cores / workers
    dashboard_address: str = "127.0.0.1:8787"
    wait_for_workers_s: float | None = Field(120.0, gt=0)  # None: wait as long as it takes
    connect_timeout_s: float = Field(10.0, gt=0)  # reaching the scheduler at address
    local: LocalSettings = LocalSettings()
    local_cuda: LocalCudaSettings = LocalCudaSettings()
    slurm: SlurmSettings = SlurmSettings()

    @model_validator(mode="after")
    def _consistent(self) -> DaskSettings:
        if self.cluster == "address" and not self.address:
            raise ValueError("cluster: address needs address: tcp://<host>:<port>")
        if self.address and self.cluster != "address":
            raise ValueError(
                f"address is set but cluster is {self.cluster!r}; use cluster: address"
            )
        if self.address and "://" not in self.address:
            raise ValueError(f"address {self.address!r} needs a protocol, e.g. tcp://host:8786")
        if self.gpu_per_training > 0:
            share = 1.0 / self.gpu_per_training
            if abs(share - round(share)) > 1e-6:
                raise ValueError(
                    f"gpu_per_training {self.gpu_per_training} is not 1/k; use 1, 0.5, 0.25, ..."
                )
        if self.cluster == "slurm" and self.slurm.gpus > 1 and self.trainings_per_gpu > 1:
            raise ValueError(
                "gpu_per_training < 1 with slurm.gpus > 1 is not supported: use slurm.gpus: 1 "
                "(each job then runs 1 / gpu_per_training workers on its GPU) and more jobs"
            )
        return self

    @property
    def trainings_per_gpu(self) -> int:
        """How many trainings share one GPU (each in its own worker process)."""
        return round(1.0 / self.gpu_per_training) if self.gpu_per_training > 0 else 1

    def uses_gpus(self) -> bool:
        """Whether GPU-tagged nodes ask the scheduler for a ``GPU`` resource."""
        if self.cluster == "local":
            return False  # CPU worker processes
        if self.cluster == "slurm" and self.slurm.gpus == 0:
            return False
        return self.gpu_per_training > 0


def load_settings(
    tree: dict[str, Any] | None,
    files: list[Path] | None = None,
    *,
    overrides: dict[str, Any] | None = None,
) -> DaskSettings:
    """Validate the merged ``dask`` configuration (plus ``--runner-params`` overrides).

    Raises:
        brstnet.parameter_check.ParameterError: names each bad key and its file.
    """
    merged = _merged(dict(tree or {}), overrides or {})
    return validate_settings(
        DaskSettings,
        merged,
        files,
        runtime=overrides,
        runtime_flag="--runner-params",
        what="Dask setting",
    )


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``, nested blocks merged key by key (``slurm.jobs=8`` keeps the
    other ``slurm`` keys)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out
