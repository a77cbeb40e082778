"""``DaskRunner``: Kedro's runner on dask.distributed, from one machine to a cluster.

Built as Kedro's Dask guide builds it (an :class:`~kedro.runner.AbstractRunner` whose
``_run`` submits every node as a Dask task with its upstream nodes' futures as
arguments), plus what a sweep of hundreds of trainings needs:

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

Use: ``kedro run --runner=brstnet.runners.DaskRunner`` (``--runner-params
cluster=local_cuda`` overrides the configured kind).
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections import Counter, defaultdict
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.runner import AbstractRunner

from .clusters import Cluster, open_cluster, training_resources
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
        cluster: Override the configured cluster kind (``--runner-params cluster=...``).
        address: Override the scheduler address (with ``cluster=address``).

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
        cluster: str | None = None,
        address: str | None = None,
    ) -> None:
        super().__init__(is_async=is_async)
        self._settings = settings
        self._overrides = {
            k: v for k, v in {"cluster": cluster, "address": address}.items() if v is not None
        }
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
        check_picklable(pipeline.nodes, catalog)
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
            try:
                self._submit_and_wait(pipeline, catalog, cluster, context, settings, where)
            finally:
                self.client = None

    def _submit_and_wait(
        self,
        pipeline: Pipeline,
        catalog: Any,
        cluster: Cluster,
        context: WorkerContext,
        settings: DaskSettings,
        where: str,
    ) -> None:
        from distributed import as_completed
        from tqdm.auto import tqdm

        client = cluster.client
        self._logger.info("Dask: %s", cluster.description)
        self._logger.info("Dask dashboard: %s", client.dashboard_link)
        client.forward_logging(FORWARDED_LOGGER, level=context.log_level)

        nodes = pipeline.nodes  # topologically sorted: upstream futures exist first
        needs = training_resources(settings)
        gpu_tags = set(settings.gpu_node_tags)
        token = uuid.uuid4().hex[:8]
        futures: dict[Node, Any] = {}
        dependencies = pipeline.node_dependencies
        for node in nodes:
            gpu = bool(gpu_tags & set(node.tags))
            futures[node] = client.submit(
                run_node,
                node,
                catalog,
                context,
                *(futures[d] for d in dependencies[node]),
                key=f"{node.name}-{token}",
                resources=needs if gpu else None,
                priority=1 if gpu else 0,  # start the long GPU trainings first
                pure=False,
            )
        gpu_count = sum(bool(gpu_tags & set(n.tags)) for n in nodes)
        self._logger.info(
            "Submitted %d nodes (%d asking for %s)",
            len(nodes),
            gpu_count,
            needs or "no GPU: CPU workers",
        )

        node_of = {future: node for node, future in futures.items()}
        load_counts = Counter(chain.from_iterable(n.inputs for n in nodes))
        left = Counter(_namespace(n) for n in nodes)
        spans: dict[str, list[NodeRun]] = defaultdict(list)
        done = as_completed(list(futures.values()))
        with tqdm(total=len(nodes), desc="Dask nodes", unit="node", disable=None) as bar:
            for future in done:
                node = node_of[future]
                if future.status != "finished":
                    self._fail(client, futures, future, node, settings, where)
                record: NodeRun = future.result()
                self.node_runs.append(record)
                bar.update()
                self._logger.info(
                    "Completed node %s in %.1f s on %s (%d of %d)",
                    node.name,
                    record.seconds,
                    record.worker,
                    len(self.node_runs),
                    len(nodes),
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
                self._release_datasets(node, catalog, load_counts, pipeline)

    def _fail(
        self,
        client: Any,
        futures: dict[Node, Any],
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
        client.cancel(
            list(futures.values())
        )  # after reading the error: a cancelled future has none
        if error is None:
            raise DaskRunnerError(f"node {node.name!r} was cancelled on the Dask cluster")
        self._logger.warning(
            "A node failed; the outputs already written are kept: run the same command with "
            "--only-missing-outputs to resume"
        )
        if isinstance(error, KilledWorker):
            key = str(getattr(error, "task", ""))
            lost = next((n.name for n, f in futures.items() if f.key == key), node.name)
            raise DaskRunnerError(
                f"node {lost!r} was lost with its Dask worker {settings.retries + 1} times "
                f"(retries: {settings.retries} in {where}); the worker died (killed, out of "
                f"memory?). Last worker: {getattr(error, 'last_worker', '?')}"
            ) from error
        name = getattr(error, "brstnet_node", node.name)
        self._logger.error("Node %s failed: %s: %s", name, type(error).__name__, error)
        raise error.with_traceback(traceback)


def _namespace(node: Node) -> str | None:
    return node.namespace.split(".")[0] if node.namespace else None


def _session_config(hook_manager: Any) -> Any:
    """The :class:`DaskConfigHook` state of this session, if the hook is registered."""
    plugins = getattr(hook_manager, "get_plugins", lambda: set())()
    for plugin in plugins:
        if isinstance(plugin, DaskConfigHook) and plugin.session is not None:
            return plugin.session
    return None


def worker_hooks(hook_manager: Any) -> tuple[tuple[str, Any], ...]:
    """The session's hook implementations that fire where nodes run and can be pickled."""
    import cloudpickle

    listed = getattr(hook_manager, "list_name_plugin", lambda: [])()
    shipped = []
    for name, plugin in listed:
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


def check_picklable(nodes: list[Node], catalog: Any) -> None:
    """Nodes and catalog travel to the workers by pickle; say which cannot, before starting."""
    import cloudpickle

    bad = []
    for node in nodes:
        try:
            cloudpickle.dumps(node)
        except Exception as exc:  # noqa: BLE001
            bad.append(f"{node.name} ({exc})")
    if bad:
        raise DaskRunnerError(f"node(s) cannot be sent to Dask workers: {'; '.join(bad[:5])}")
    try:
        size = len(cloudpickle.dumps(catalog))
    except Exception as exc:  # noqa: BLE001
        raise DaskRunnerError(f"the catalog cannot be sent to Dask workers: {exc}") from exc
    logger.debug("catalog: %.0f kB per task", size / 1e3)


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
