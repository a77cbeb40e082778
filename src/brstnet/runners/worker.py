"""What runs on a Dask worker: one Kedro node, with the session's hooks and MLflow run.

Each task gets the node, the run's catalog (datasets are files on the shared filesystem;
nothing travels between nodes through memory) and a :class:`WorkerContext` built by the
driver. The node runs through Kedro's own :class:`kedro.runner.task.Task`, so node and
dataset hooks fire on the worker exactly as under the sequential runner.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import dataclass
from typing import Any

from distributed import get_worker
from kedro.framework.hooks.manager import _create_hook_manager

#: Project loggers whose records are forwarded from the workers to the driver.
FORWARDED_LOGGER = "brstnet"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerContext:
    """The driver's state a node needs on a worker (picklable).

    Attributes:
        project_path: The Kedro project root; relative paths (e.g. checkpoints) resolve
            against it, so it must be on a filesystem every worker sees.
        run_id: Kedro's session id.
        is_async: Load and save the node's datasets in threads.
        torch_threads: torch intra-op threads per worker process (None: leave as is).
        log_level: The driver's level for the project's loggers.
        tracking_uri: The MLflow tracking URI of the session (absolute), if any.
        parent_run_id: The session's MLflow run (kedro-mlflow's), made active on the
            worker so that child runs hang under it as in a sequential run.
        hooks: The session's hook implementations that can be pickled, as (name, object).
    """

    project_path: str
    run_id: str | None = None
    is_async: bool = False
    torch_threads: int | None = None
    log_level: int = logging.INFO
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    hooks: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class NodeRun:
    """What came back from one node: where and when it ran (wall clock, seconds)."""

    name: str
    namespace: str | None
    worker: str
    pid: int
    started: float
    finished: float
    job: str | None = None  # the SLURM job it ran in (SLURM_JOB_ID), if any

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def run_node(node_bytes: bytes, catalog_bytes: bytes, context_bytes: bytes) -> NodeRun:
    """Run one Kedro node on this worker.

    Args:
        node_bytes: The pickled ``kedro.pipeline.Node``.
        catalog_bytes: The pickled catalog of the run.
        context_bytes: The pickled :class:`WorkerContext`.

    Raises:
        Exception: the node's own error, with a note naming the node and the worker.
    """
    started = time.time()
    # unpickled here, in the task's thread: it imports the node's modules, which must
    # not stall the worker's event loop (see brstnet.runners.payloads.pickled)
    node, catalog = pickle.loads(node_bytes), pickle.loads(catalog_bytes)
    context: WorkerContext = pickle.loads(context_bytes)
    # deferred: Kedro's runners are imported in the task's thread (as the node's modules
    # above), not in the worker's event loop when this function is unpickled
    from kedro.runner.task import Task

    worker = _worker_address()
    job = os.environ.get("SLURM_JOB_ID")
    _prepare_process(context)
    logger.info(
        "Running node %s on %s, pid %d%s",
        node.name,
        worker,
        os.getpid(),
        f", SLURM job {job}" if job else "",
    )
    hook_manager = _hook_manager(context.hooks)
    _use_session_tracking(context)
    try:
        Task(
            node=node,
            catalog=catalog,
            hook_manager=hook_manager,
            is_async=context.is_async,
            run_id=context.run_id,
        ).execute()
    except Exception as exc:
        where = f"Dask worker {worker}, pid {os.getpid()}" + (f", SLURM job {job}" if job else "")
        exc.add_note(f"in Kedro node {node.name!r} ({where})")
        raise
    return NodeRun(node.name, node.namespace, worker, os.getpid(), started, time.time(), job)


def _worker_address() -> str:
    try:
        return str(get_worker().address)
    except ValueError:  # called outside a worker (tests of this module)
        return "local"


def _prepare_process(context: WorkerContext) -> None:
    """Working directory, torch threads and project log level of this worker process."""
    if os.path.realpath(os.getcwd()) != os.path.realpath(context.project_path):
        os.chdir(context.project_path)  # relative paths in parameters resolve as on the driver
    if context.torch_threads is not None:
        # deferred: torch is heavy; imported in the task's thread, not the event loop
        import torch

        if torch.get_num_threads() != context.torch_threads:
            torch.set_num_threads(context.torch_threads)
    project = logging.getLogger(FORWARDED_LOGGER)
    project.setLevel(context.log_level)
    project.propagate = False  # forwarded to the driver, not printed twice here
    if os.environ.get("SLURM_JOB_ID") and not any(
        getattr(h, "_brstnet_job_log", False) for h in project.handlers
    ):
        # in a batch job the records also go to the job's own output file (log_directory)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._brstnet_job_log = True  # type: ignore[attr-defined]
        project.addHandler(handler)


def _hook_manager(hooks: tuple[tuple[str, Any], ...]) -> Any:
    """A hook manager holding the session's (picklable) hook implementations."""
    manager = _create_hook_manager()
    for name, plugin in hooks:
        if not manager.is_registered(plugin):
            manager.register(plugin, name=name)
    return manager


def _use_session_tracking(context: WorkerContext) -> None:
    """Point MLflow at the session's store and make its run active in this thread."""
    if context.tracking_uri is None:
        return
    # deferred: MLflow is heavy, and needed only where the session tracks its run
    import mlflow

    if mlflow.get_tracking_uri() != context.tracking_uri:
        mlflow.set_tracking_uri(context.tracking_uri)
    if context.parent_run_id is None:
        return
    active = mlflow.active_run()
    if active is None or active.info.run_id != context.parent_run_id:
        # resumes the session's run in this thread (its status stays RUNNING); the driver
        # ends it when the pipeline ends, as kedro-mlflow does for threads
        mlflow.start_run(run_id=context.parent_run_id, nested=active is not None)
