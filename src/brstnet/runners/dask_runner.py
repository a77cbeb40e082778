"""``DaskRunner``: Kedro's runner on dask.distributed, from one machine to a cluster.

Built as Kedro's Dask guide builds it (an :class:`~kedro.runner.AbstractRunner` whose
``_run`` submits the nodes as tasks to a ``distributed.Client``; a node is submitted once
its upstream nodes are done, see :class:`~brstnet.runners.scheduling.NodeScheduler`), plus
what a sweep of hundreds of trainings needs:

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
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.runner import AbstractRunner
from pluggy import PluginManager

from .clusters import open_cluster
from .config import DaskSettings, load_settings
from .errors import DaskRunnerError
from .hooks import DaskConfigHook, SessionDaskConfig
from .payloads import (
    Payloads,
    check_outputs_are_files,
    dumps,
    pickled,
    session_tracking,
    worker_hooks,
)
from .scheduling import NodeScheduler
from .worker import FORWARDED_LOGGER, NodeRun, WorkerContext

if TYPE_CHECKING:
    from kedro.pipeline import Pipeline

__all__ = ["DaskRunner", "DaskRunnerError"]


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
        tracking_uri, parent_run = session_tracking(Path.cwd())
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
            sent = Payloads(payloads, catalog_bytes, dumps(context))
            scheduler = NodeScheduler(
                pipeline,
                catalog,
                cluster,
                sent,
                settings,
                where,
                logger=self._logger,
                release=self._release_datasets,
                node_runs=self.node_runs,
            )
            try:
                scheduler.run()
            finally:
                self.client = None
                with suppress(Exception):  # a shared scheduler's workers keep no plugin of ours
                    cluster.client.unforward_logging(FORWARDED_LOGGER)


def _session_config(hook_manager: Any) -> SessionDaskConfig | None:
    """The :class:`DaskConfigHook` state of this session, if the hook is registered."""
    if not isinstance(hook_manager, PluginManager):  # None, or Kedro's _NullPluginManager
        return None
    for plugin in hook_manager.get_plugins():
        if isinstance(plugin, DaskConfigHook) and plugin.session is not None:
            return plugin.session
    return None
