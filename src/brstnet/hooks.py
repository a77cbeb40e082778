"""Project hooks: the run's configuration is the run.

- ``after_context_created``: validate every parameter against one typed model
  (:class:`brstnet.config.ProjectParams`) before anything runs, naming each bad key and
  the file that sets it; then hand the session's parameters (``--env`` and ``--params``
  included) to the pipeline registry through the hook's
  :class:`~brstnet.pipelines.run_parameters.RunParameters`, so the namespaces registered
  are those the nodes' parameters give (the registry is reloaded when they differ from
  those it was built from). The run's end takes them back.
- ``before_pipeline_run``: a last guard that the pipeline's training namespaces are the
  ones this run's parameters give (never a silent mismatch).

:class:`TrackingHooks` records which process owns the run kedro-mlflow starts, and marks
the project's runs that killed ``kedro run``s left RUNNING as KILLED
(:mod:`brstnet.mlflow_runs`); it opens the experiment in MLflow's model-training view on
the comparison columns, this run expanded (:mod:`brstnet.mlflow_views`), and logs system
metrics (CPU, memory, GPU with nvidia-ml-py) into the run while it lasts.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines
from kedro_mlflow.framework.hooks.mlflow_hook import mlflow_hook
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from brstnet.mlflow_runs import check_tracking_store, end_orphaned_runs, owner_tags
from brstnet.mlflow_views import set_experiment_views
from brstnet.parameter_check import parameter_files, validate_parameters
from brstnet.pipelines.run_parameters import RunParameters
from brstnet.pipelines.variants import check_registered

logger = logging.getLogger(__name__)


def _reload_registry() -> None:
    """Drop Kedro's cached pipelines so the next access registers them afresh."""
    # configure() is Kedro's way to reset the cache; it needs the module it was given
    requested = getattr(pipelines, "_requested_pipelines", None)
    pipelines.configure(pipelines._pipelines_module)
    pipelines.set_requested(requested)


class ProjectHooks:
    """Parameter validation and the registry's view of the run (see the module docstring).

    Attributes:
        run_parameters: The session's parameters, as the pipeline registry reads them.
    """

    def __init__(self) -> None:
        self.run_parameters = RunParameters()

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        _forget_previous_mlflow_run()

        loader = context.config_loader
        params = loader["parameters"]
        validate_parameters(
            params,
            parameter_files(loader, context.env),
            runtime=getattr(loader, "runtime_params", None) or None,
        )
        if self.run_parameters.use(params):
            logger.info("parameters differ from the registered pipelines': registering afresh")
            _reload_registry()

    @hook_impl
    def on_node_error(self, error: Exception, node: Any) -> None:
        """Name the node on its error (``kedro run`` prints it in the one-line block,
        brstnet.cli), unless the Dask runner already has."""
        if not any(node.name in note for note in getattr(error, "__notes__", [])):
            error.add_note(f"in Kedro node {node.name!r}")

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        per_variant = {
            node.namespace.split(".")[0]
            for node in pipeline.nodes
            if node.namespace and node.name.split(".")[-1] in ("train_model", "predict_held_out")
        }
        filters = ("tags", "from_nodes", "to_nodes", "node_names", "from_inputs", "to_outputs")
        complete = not any(run_params.get(k) for k in (*filters, "namespaces"))
        params = self.run_parameters.session
        if per_variant and params is not None:
            check_registered(per_variant, params, complete=complete)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self.run_parameters.use(None)  # outside a session: KEDRO_ENV's configuration

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        self.after_pipeline_run(run_params, pipeline, catalog)


def _forget_previous_mlflow_run() -> None:
    """kedro-mlflow's hook is one object per process and keeps the last run's id; a later
    session whose pipeline has tracking off (data_processing, feature_selection) would
    then reopen that run, in another project's store, at every node. A new session starts
    with none."""
    mlflow_hook.run_id = None


def system_metrics_enabled() -> bool:
    """MLflow's system metrics for tracked runs: on unless MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
    says false, and only where psutil is installed (MLflow samples with it)."""
    setting = os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true").strip().lower()
    return setting not in ("false", "0", "no") and importlib.util.find_spec("psutil") is not None


#: The OmegaConf resolver giving the project's root folder (``mlflow.yml``:
#: ``sqlite:///${brstnet.project_root:}/mlflow.db``).
PROJECT_ROOT_RESOLVER = "brstnet.project_root"


class TrackingHooks:
    """MLflow runs of killed ``kedro run``s marked KILLED on the next tracked run; the
    experiment's comparison view; system metrics (see the module docstring)."""

    def __init__(self) -> None:
        self._monitor = None

    @hook_impl(tryfirst=True)  # before kedro-mlflow reads mlflow.yml
    def after_context_created(self, context: Any) -> None:
        """The tracking store is the project's own ``mlflow.db`` whatever the working
        directory: a notebook in notebooks/ would otherwise create notebooks/mlflow.db
        (a relative sqlite path), and two projects in one process share one store."""
        root = Path(context.project_path).resolve().as_posix()
        OmegaConf.register_new_resolver(PROJECT_ROOT_RESOLVER, lambda: root, replace=True)
        loader = context.config_loader
        # kedro-mlflow adds this pattern in its own hook, which runs after this one
        loader.config_patterns.setdefault("mlflow", ["mlflow*", "mlflow*/**", "**/mlflow*"])
        try:
            uri = str(loader["mlflow"]["server"]["mlflow_tracking_uri"])
        except Exception:  # noqa: BLE001 - no mlflow.yml or key: kedro-mlflow's defaults apply
            return
        check_tracking_store(uri)

    @hook_impl(trylast=True)  # after kedro-mlflow's hook has started this run
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        active = mlflow.active_run()
        if active is None:  # tracking is off for this pipeline
            return
        client = MlflowClient()
        run_id, experiment_id = active.info.run_id, active.info.experiment_id
        try:
            for key, value in owner_tags().items():
                client.set_tag(run_id, key, value)
            end_orphaned_runs(client, [experiment_id], current=run_id)
        except Exception as err:  # MLflow raises many types; bookkeeping never stops a run
            logger.warning("could not look for MLflow runs left RUNNING by killed runs: %s", err)
        try:
            set_experiment_views(client, experiment_id, expand=run_id)
        except Exception as err:
            logger.warning("could not store the MLflow comparison view: %s", err)
        self._start_system_metrics(run_id)

    def _start_system_metrics(self, run_id: str) -> None:
        self._stop_system_metrics()
        if not system_metrics_enabled():
            return
        try:
            self._monitor = SystemMetricsMonitor(run_id)
            self._monitor.start()
        except Exception as err:  # e.g. a monitor that cannot read the GPU
            logger.warning("MLflow system metrics are not logged: %s", err)
            self._monitor = None

    def _stop_system_metrics(self) -> None:
        if self._monitor is not None:
            try:
                self._monitor.finish()
            except Exception as err:
                logger.warning("could not stop MLflow's system metrics monitor: %s", err)
            self._monitor = None

    @hook_impl(tryfirst=True)  # before kedro-mlflow's hook ends the run
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._stop_system_metrics()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        self._stop_system_metrics()
