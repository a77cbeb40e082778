"""``DaskRunner``: Kedro's runner on dask.distributed, from one machine to a cluster.

Built as Kedro's Dask guide builds it (an :class:`~kedro.runner.AbstractRunner` whose
``_run`` submits the nodes as tasks to a ``distributed.Client``; a node is submitted once
its upstream nodes are done, see :meth:`DaskRunner._submit_and_wait`), plus what a sweep
of hundreds of trainings needs:

- the cluster comes from ``conf/<env>/dask.yml`` (:mod:`brstnet.runners.config`): a
  ``LocalCluster``, dask-cuda's ``LocalCUDACluster``, dask-jobqueue's ``SLURMCluster``,
  or a running scheduler's address; bad settings fail before any node runs;
- GPU-tagged nodes (``training``) ask for a ``GPU`` resource, so two trainings share a
  GPU only when ``gpu_per_training`` allows it (and then in separate processes);
- every node output must be a catalog file (no data between nodes in process memory);
- a task whose worker dies is re-run (``retries``), and the training resumes from its
  last checkpoint; a node's own error fails the run with that error and the node name;
- the session's node hooks (kedro-mlflow's included) run on the workers, with the
  session's MLflow run active there, so the MLflow runs look as in a sequential run;
- the dashboard link is logged, then one line per finished namespace with its wall time.

Use: ``kedro run --runner=brstnet.runners.DaskRunner``; ``--runner-params
"cluster=local_cuda,gpu_per_training=0.25"`` overrides keys of ``dask.yml``.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.runner import AbstractRunner

from .clusters import Cluster, dashboard_link, open_cluster, training_resources
from .config import DaskSettings, load_settings
from .hooks import DaskConfigHook
from .worker import FORWARDED_LOGGER, NodeRun, WorkerContext, run_node

if TYPE_CHECKING:
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

logger = logging.getLogger(__name__)

#: Hook specifications that fire where a node runs (sent to the workers).
NODE_HOOKS = frozenset(
    {
        "before_node_run",
        "after_node_run",
        "on_node_error",
        "before_dataset_loaded",
        "after_dataset_loaded",
        "before_dataset_saved",
        "after_dataset_saved",
    }
)


class DaskRunnerError(RuntimeError):
    """The pipeline cannot run on Dask as configured (the message says what to change)."""


class DaskRunner(AbstractRunner):
    """Run a Kedro pipeline on a Dask cluster (see the module docstring).

    Args:
        is_async: Load and save each node's datasets in threads (as Kedro's runners).
        settings: Explicit settings (a :class:`DaskSettings` or its dict); by default
            those of the session's ``dask.yml``.
        overrides: Settings over those (``--runner-params "cluster=slurm,slurm.jobs=8"``
            on the command line), checked like the file.

    Attributes:
        client: The ``distributed.Client`` while a run is in progress, else None.
        node_runs: The :class:`~brstnet.runners.worker.NodeRun` of every node of the
            last run, in the order they finished.
    """

    def __init__(
        self,
        is_async: bool = False,
        *,
        settings: DaskSettings | dict[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(is_async=is_async)
        self._settings = settings
        self._overrides = overrides
        self.client: Any = None
        self.node_runs: list[NodeRun] = []

    def _get_executor(self, max_workers: int) -> None:
        return None  # Dask is the executor (see _run)

    def resolve_settings(
        self, hook_manager: PluginManager | None = None
    ) -> tuple[DaskSettings, str, Path]:
        """The settings, where they come from (for messages) and the project folder."""
        session = _session_config(hook_manager)
        project = session.project_path if session is not None else Path.cwd()
        if isinstance(self._settings, DaskSettings):
            settings = self._settings
            if self._overrides:
                settings = load_settings(settings.model_dump(), overrides=self._overrides)
            return settings, "DaskRunner(settings=...)", project
        if self._settings is not None:
            tree, files, where = dict(self._settings), [], "DaskRunner(settings=...)"
        elif session is not None:
            tree, files = session.tree, session.files
            where = ", ".join(session.shown_files()) or "DaskRunner defaults (no dask.yml)"
        else:
            tree, files, where = {}, [], "DaskRunner defaults (no Kedro session)"
        return load_settings(tree, files, overrides=self._overrides), where, project

    def _run(
        self,
        pipeline: Pipeline,
        catalog: Any,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        """Check everything, start the cluster, submit every node, wait, report."""
        settings, where, project = self.resolve_settings(hook_manager)
        self.node_runs = []
        if not pipeline.nodes:
            self._logger.info("Nothing to run on Dask: the pipeline has no node")
            return
        check_outputs_are_files(pipeline, catalog)
        payloads, catalog_bytes = pickled(pipeline.nodes, catalog)
        tracking_uri, parent_run = _session_tracking(Path.cwd())
        hooks = worker_hooks(hook_manager)
        with open_cluster(settings, project_path=project, where=where) as cluster:
            context = WorkerContext(
                project_path=str(project),
                run_id=run_id,
                is_async=self._is_async,
                torch_threads=cluster.torch_threads,
                log_level=logging.getLogger(FORWARDED_LOGGER).getEffectiveLevel(),
                tracking_uri=tracking_uri,
                parent_run_id=parent_run,
                hooks=hooks,
            )
            self.client = cluster.client
            sent = Payloads(payloads, catalog_bytes, _dumps(context))
            try:
                self._submit_and_wait(pipeline, catalog, cluster, sent, settings, where)
            finally:
                self.client = None
                with suppress(Exception):  # a shared scheduler's workers keep no plugin of ours
                    cluster.client.unforward_logging(FORWARDED_LOGGER)

    def _submit_and_wait(
        self,
        pipeline: Pipeline,
        catalog: Any,
        cluster: Cluster,
        sent: Payloads,
        settings: DaskSettings,
        where: str,
    ) -> None:
        """Submit each node once its upstream nodes are done; log as they finish.

        Upstream futures are deliberately not task arguments (as in Kedro's Dask guide):
        a finished task's result lives on its worker, and when that worker dies Dask
        recomputes it for any task still waiting on it, which would re-run a finished
        training. Nodes exchange data through catalog files only, so a node is simply
        submitted when its inputs are written, as Kedro's own runners do; Dask places it
        (resources, free workers) and re-runs it if its worker dies.
        """
        from distributed import as_completed
        from tqdm.auto import tqdm

        client = cluster.client
        self._logger.info("Dask: %s", cluster.description)
        self._logger.info("Dask dashboard: %s", dashboard_link(client, settings))
        client.forward_logging(
            FORWARDED_LOGGER, level=logging.getLogger(FORWARDED_LOGGER).getEffectiveLevel()
        )

        nodes = pipeline.nodes
        needs = training_resources(settings)
        gpu_tags = set(settings.gpu_node_tags)
        is_gpu = {n: bool(gpu_tags & set(n.tags)) for n in nodes}
        order = {n: i for i, n in enumerate(nodes)}  # topological
        self._logger.info(
            "Running %d nodes on Dask (%d asking for %s)",
            len(nodes),
            sum(is_gpu.values()),
            needs or "no GPU: CPU workers",
        )
        token = uuid.uuid4().hex[:8]
        upstream = pipeline.node_dependencies
        downstream: dict[Node, set[Node]] = defaultdict(set)
        for node, parents in upstream.items():
            for parent in parents:
                downstream[parent].add(node)
        futures: dict[Any, Node] = {}
        pending = as_completed()

        def submit(ready: list[Node]) -> None:
            # the long GPU trainings first, then pipeline order
            for node in sorted(ready, key=lambda n: (not is_gpu[n], order[n])):
                future = client.submit(
                    run_node,
                    sent.nodes[node],
                    sent.catalog,
                    sent.context,
                    key=f"{node.name}-{token}",
                    resources=needs if is_gpu[node] else None,
                    priority=1 if is_gpu[node] else 0,
                    pure=False,
                )
                futures[future] = node
                pending.add(future)

        done_nodes: set[Node] = set()
        load_counts = Counter(chain.from_iterable(n.inputs for n in nodes))
        left = Counter(_namespace(n) for n in nodes)
        spans: dict[str | None, list[NodeRun]] = defaultdict(list)
        submit([n for n in nodes if not upstream[n]])
        with tqdm(total=len(nodes), desc="Dask nodes", unit="node", disable=None) as bar:
            try:
                for future in _finished(pending, cluster):
                    node = futures[future]
                    if future.status != "finished":
                        self._fail(client, futures, future, node, settings, where)
                    record: NodeRun = future.result()
                    future.release()
                    done_nodes.add(node)
                    self.node_runs.append(record)
                    bar.update()
                    self._log_finished(node, record, spans, left, len(nodes))
                    self._release_datasets(node, catalog, load_counts, pipeline)
                    submit([c for c in downstream[node] if upstream[c] <= done_nodes])
            except _ClusterLost as lost:
                self._stop_lost(client, futures, str(lost), where)
        if len(done_nodes) != len(nodes):  # cannot happen for a valid Kedro pipeline
            missing = sorted(n.name for n in set(nodes) - done_nodes)
            raise DaskRunnerError(f"nodes never became ready: {missing[:5]}")

    def _stop_lost(self, client: Any, futures: dict[Any, Node], why: str, where: str) -> None:
        """Every job of the run has ended: cancel what is left and say how to resume."""
        left = sorted(node.name for f, node in futures.items() if f.status == "pending")
        client.cancel([f for f in futures if f.status == "pending"])
        shown = ", ".join(left[:4]) + (" ..." if len(left) > 4 else "")
        raise DaskRunnerError(
            f"{why} and no Dask worker is left; {len(left)} node(s) did not finish ({shown}). "
            "The outputs already written are kept: run the same command with "
            "--only-missing-outputs to resume (trainings resume from their checkpoints); a "
            f"job that hit its time limit needs a longer slurm.walltime ({where})"
        )

    def _log_finished(
        self,
        node: Node,
        record: NodeRun,
        spans: dict[str | None, list[NodeRun]],
        left: Counter,
        total: int,
    ) -> None:
        """One line per node; one line per namespace once its last node is done."""
        self._logger.info(
            "Completed node %s in %.1f s on %s%s (%d of %d)",
            node.name,
            record.seconds,
            record.worker,
            f", SLURM job {record.job}" if record.job else "",
            len(self.node_runs),
            total,
        )
        namespace = _namespace(node)
        spans[namespace].append(record)
        left[namespace] -= 1
        if namespace and not left[namespace]:
            runs = spans[namespace]
            wall = max(r.finished for r in runs) - min(r.started for r in runs)
            self._logger.info(
                "Finished namespace %s in %.1f s (%d node(s) on %s)",
                namespace,
                wall,
                len(runs),
                ", ".join(sorted({r.worker for r in runs})),
            )

    def _fail(
        self,
        client: Any,
        futures: dict[Any, Node],
        future: Any,
        node: Node,
        settings: DaskSettings,
        where: str,
    ) -> None:
        """Cancel what is left and raise the failing node's own error."""
        from distributed import CancelledError
        from distributed.scheduler import KilledWorker

        try:
            error = future.exception()
            traceback = future.traceback()
        except CancelledError:
            error = None
        # only now: a cancelled future has no error to read
        client.cancel([f for f in futures if f.status == "pending"])
        if error is None:
            raise DaskRunnerError(f"node {node.name!r} was cancelled on the Dask cluster")
        self._logger.warning(
            "A node failed; the outputs already written are kept: run the same command with "
            "--only-missing-outputs to resume"
        )
        if isinstance(error, KilledWorker):
            raise DaskRunnerError(
                f"node {node.name!r} was lost with its Dask worker {settings.retries + 1} times "
                f"(retries: {settings.retries} in {where}); the worker died (killed, out of "
                f"memory?). Last worker: {getattr(error, 'last_worker', '?')}"
            ) from error
        self._logger.error("Node %s failed: %s: %s", node.name, type(error).__name__, error)
        if not any(node.name in note for note in getattr(error, "__notes__", [])):
            error.add_note(f"in Kedro node {node.name!r} (on Dask)")  # failed before it ran
        raise error.with_traceback(traceback)


class _ClusterLost(Exception):
    """No worker is left and none will come (the message says why)."""


def _finished(pending: Any, cluster: Cluster, *, check_every_s: float = 5.0) -> Iterator[Any]:
    """The futures of ``pending`` (a ``distributed.as_completed``) as they finish; while
    none does, ask the cluster every ``check_every_s`` whether any worker can still come
    (:meth:`Cluster.lost`), so that a run whose SLURM jobs have all ended stops instead of
    waiting for ever."""
    last = time.monotonic()
    while not pending.is_empty():
        if pending.has_ready():
            yield from pending.next_batch(block=False)
            last = time.monotonic()
            continue
        if time.monotonic() - last >= check_every_s:
            last = time.monotonic()
            why = cluster.lost()
            if why is not None:
                raise _ClusterLost(why)
        time.sleep(0.05)


@dataclass(frozen=True)
class Payloads:
    """What every task carries, pickled once on the driver."""

    nodes: dict[Node, bytes]
    catalog: bytes
    context: bytes


def _dumps(obj: Any) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(obj)


def _namespace(node: Node) -> str | None:
    return node.namespace.split(".")[0] if node.namespace else None


def _session_config(hook_manager: Any) -> Any:
    """The :class:`DaskConfigHook` state of this session, if the hook is registered."""
    from pluggy import PluginManager

    if not isinstance(hook_manager, PluginManager):  # None, or Kedro's _NullPluginManager
        return None
    for plugin in hook_manager.get_plugins():
        if isinstance(plugin, DaskConfigHook) and plugin.session is not None:
            return plugin.session
    return None


def worker_hooks(hook_manager: Any) -> tuple[tuple[str, Any], ...]:
    """The session's hook implementations that fire where nodes run and can be pickled."""
    import cloudpickle
    from pluggy import PluginManager

    if not isinstance(hook_manager, PluginManager):
        return ()
    shipped = []
    for name, plugin in hook_manager.list_name_plugin():
        callers = {c.name for c in hook_manager.get_hookcallers(plugin) or []}
        if not callers & NODE_HOOKS:
            continue
        try:
            cloudpickle.dumps(plugin)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means "not sent"
            logger.warning(
                "hook %s is not sent to the Dask workers (it cannot be pickled: %s); its node "
                "and dataset hooks do not run there",
                name,
                exc,
            )
            continue
        shipped.append((name, plugin))
    return tuple(shipped)


def check_outputs_are_files(pipeline: Pipeline, catalog: Any) -> None:
    """Every node output must be a persistent catalog dataset: on Dask, nodes run in
    other processes (other machines), so nothing may pass between them in memory.

    Raises:
        DaskRunnerError: naming the in-memory outputs.
    """
    from kedro.io import MemoryDataset

    in_memory = sorted(
        name
        for name in pipeline.all_outputs()
        if isinstance(ds := catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset)
        or getattr(ds, "_EPHEMERAL", False)
    )
    if in_memory:
        shown = ", ".join(in_memory[:8]) + (" ..." if len(in_memory) > 8 else "")
        raise DaskRunnerError(
            f"{len(in_memory)} node output(s) have no file in the catalog ({shown}): under the "
            "Dask runner every output must be a catalog dataset on the shared filesystem "
            "(add them to conf/base/catalog.yml)"
        )


def pickled(nodes: list[Node], catalog: Any) -> tuple[dict[Node, bytes], bytes]:
    """Nodes and catalog as the bytes the workers get; say which cannot be sent, before
    any cluster starts.

    Tasks carry bytes, unpickled when the task runs: unpickling imports the node's modules
    (torch, MLflow, ...), which would otherwise happen in the worker's event loop and, on
    a busy machine, stall it past Dask's connection timeouts.
    """
    import cloudpickle

    bad, payloads = [], {}
    for node in nodes:
        try:
            payloads[node] = cloudpickle.dumps(node)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means "cannot send"
            bad.append(f"{node.name} ({exc})")
    if bad:
        raise DaskRunnerError(f"node(s) cannot be sent to Dask workers: {'; '.join(bad[:5])}")
    try:
        data = cloudpickle.dumps(catalog)
    except Exception as exc:  # noqa: BLE001
        raise DaskRunnerError(f"the catalog cannot be sent to Dask workers: {exc}") from exc
    logger.debug("catalog: %.0f kB per task", len(data) / 1e3)
    return payloads, data


def absolute_tracking_uri(uri: str, cwd: Path) -> str:
    """A tracking URI that means the same store from any working directory."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((cwd / uri[len("sqlite:///") :]).resolve())
    if "://" not in uri and ":" not in uri[1:2]:  # a plain path (a file store)
        return str((cwd / uri).resolve())
    return uri


def _session_tracking(cwd: Path) -> tuple[str | None, str | None]:
    """The driver's MLflow tracking URI and active run (kedro-mlflow's), if MLflow is used."""
    if "mlflow" not in sys.modules:
        return None, None
    import mlflow

    active = mlflow.active_run()
    uri = absolute_tracking_uri(mlflow.get_tracking_uri(), cwd)
    return uri, active.info.run_id if active is not None else None
