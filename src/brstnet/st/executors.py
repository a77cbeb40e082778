"""Running one job per section at once: in worker processes, or on the Dask cluster.

``data_processing.executor`` picks where (:func:`each_section`):

- ``processes``: a pool of ``data_processing.workers`` processes on this machine (one
  job runs in this process when there is one worker or one job);
- ``dask``: tasks on the Dask cluster of the run. Inside a Dask task (a node run by
  ``brstnet.runners.DaskRunner``) the job submits its sections through
  ``distributed.worker_client``, leaving its own worker slot free while it waits;
  elsewhere through the process's current ``distributed.Client``. The cluster decides how
  many run at once; every worker must see the same filesystem;
- ``auto`` (default): ``dask`` inside a Dask task, else ``processes``.

Results are yielded as jobs finish. A failing job stops the others that have not
started, and its error is raised.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, Literal

from ..registry import unknown_name
from .errors import DataError

__all__ = ["EXECUTORS", "cpu_count", "each_section", "on_dask_worker", "resolve_executor"]

ExecutorName = Literal["auto", "processes", "dask"]
EXECUTORS: tuple[str, ...] = ("auto", "processes", "dask")


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, as ``os.process_cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def on_dask_worker() -> bool:
    """True inside a task running on a Dask worker."""
    if "distributed" not in sys.modules:  # a Dask worker has imported it: no import here
        return False
    from distributed import get_worker  # optional (the Dask executor)

    try:
        get_worker()
    except ValueError:
        return False
    return True


def resolve_executor(name: str) -> str:
    """``processes`` or ``dask`` for ``name`` (``auto``: dask inside a Dask task)."""
    if name not in EXECUTORS:
        raise ValueError(unknown_name(name, EXECUTORS, "executor"))
    if name == "auto":
        return "dask" if on_dask_worker() else "processes"
    return name


@contextmanager
def _dask_executor() -> Iterator[Executor]:
    from distributed import get_client, worker_client  # optional (the Dask executor)

    if on_dask_worker():
        with worker_client() as client:  # secedes: this task's slot runs section tasks too
            yield client.get_executor(pure=False)
        return
    try:
        client = get_client()
    except ValueError as err:
        raise DataError(
            "data_processing.executor is dask, but no Dask client is running: run with "
            "--runner=brstnet.runners.DaskRunner, start a distributed.Client first, or set "
            "data_processing.executor to processes"
        ) from err
    yield client.get_executor(pure=False)


@contextmanager
def _executor(name: str, workers: int, jobs: int) -> Iterator[Executor | None]:
    if resolve_executor(name) == "dask":
        with _dask_executor() as executor:
            yield executor
        return
    if workers <= 1 or jobs <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, jobs))
    try:
        yield pool
    finally:  # after an error: the jobs not started yet are dropped, not waited for
        pool.shutdown(wait=True, cancel_futures=True)


def each_section(
    function: Callable[..., Any],
    jobs: Sequence[tuple],
    *,
    executor: str = "auto",
    workers: int = 1,
) -> Iterator[tuple[int, Any]]:
    """``function(*job)`` for every job, yielded as ``(position in jobs, result)``.

    Args:
        function: A picklable module-level function.
        jobs: Its argument tuples (picklable for processes; for Dask, by cloudpickle).
        executor: ``auto``, ``processes`` or ``dask`` (see the module docstring).
        workers: Processes for ``processes`` (1: every job in this process, in order).

    Raises:
        Exception: the first failing job's error (the jobs not started yet are cancelled).
    """
    with _executor(executor, workers, len(jobs)) as pool:
        if pool is None:
            for k, job in enumerate(jobs):
                yield k, function(*job)
            return
        futures: dict[Future, int] = {pool.submit(function, *job): k for k, job in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()
