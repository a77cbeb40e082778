"""Log a :class:`~brstnet.evaluation.tracking.TrackedRun` as its own MLflow run.

kedro-mlflow opens one run per ``kedro run``; to compare variants side by side in the
MLflow UI each variant gets a child run under it (``mlflow.parentRunId``), with its
params, metrics, epoch curves (metric histories), per-gene table, plots and models: each
fold's bundle as files (``model/fold<k>``, for ``runs:/`` URIs) and as an MLflow logged
model (``<variant>_fold<k>``, a pyfunc model: "Models", the registry and
``mlflow.pyfunc.load_model``). A trained variant's run starts and ends with its folds'
training. Outside a kedro-mlflow session the run is top-level in ``experiment``.

:class:`MlflowParentRunDataset` logs the best variant's headline on the ``kedro run``'s
own run (the parent), so that its row in the runs table compares with others too.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from brstnet.evaluation.tracking import TrackedRun
from brstnet.mlflow_runs import owner_tags
from brstnet.mlflow_views import set_experiment_views

logger = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 500


class MlflowChildRunDataset(AbstractDataset[TrackedRun, dict]):
    """Save: create a run and log everything in it. Load: the latest such run's data."""

    def __init__(
        self, run_name: str, *, experiment: str = "brstnet", metadata: dict[str, Any] | None = None
    ) -> None:
        self._run_name = run_name
        self._experiment = experiment
        self.metadata = metadata

    @staticmethod
    def _parent(client):
        """The kedro-mlflow run of this session, if it lives in the current tracking store."""
        active = mlflow.active_run()
        if active is None:
            return None
        try:
            client.get_run(active.info.run_id)
        except MlflowException:  # a run left active by another store (e.g. a finished session)
            return None
        return active

    def _experiment_id(self, client, parent) -> str:
        if parent is not None:
            return parent.info.experiment_id
        found = client.get_experiment_by_name(self._experiment)
        return (
            found.experiment_id if found is not None else client.create_experiment(self._experiment)
        )

    def save(self, data: TrackedRun) -> None:
        # deferred: the pyfunc model class (torch; MLflow warns when it is defined) loads
        # only when a variant's models are logged, not with every catalog
        from brstnet.inference.pyfunc import log_bundle_model
        from brstnet.training.bundle import save_bundle

        client = MlflowClient()
        parent = self._parent(client)
        # the owner lets a later run mark this one KILLED if this process is killed
        tags = {"mlflow.runName": data.name, **data.tags, **owner_tags()}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent.info.run_id
            # a variant's run is its evaluation; MLflow's runs table opens the parents of
            # evaluation runs expanded, so the variants show without a click
            tags["mlflow.runType"] = "evaluation"
        experiment_id = self._experiment_id(client, parent)
        set_experiment_views(client, experiment_id, replace=False)
        run = client.create_run(
            experiment_id, start_time=_ms(data.start_time), run_name=data.name, tags=tags
        )
        run_id = run.info.run_id
        try:
            log_contents(client, run_id, data)
            with tempfile.TemporaryDirectory() as tmp:
                for name, table in data.tables.items():
                    path = Path(tmp) / name
                    table.to_csv(path)
                    client.log_artifact(run_id, str(path))
                for name, image in data.images.items():
                    path = Path(tmp) / name
                    image.save(path)
                    client.log_artifact(run_id, str(path))
                for folder, bundle in data.models.items():
                    local = Path(tmp) / "models" / folder
                    save_bundle(bundle, local)
                    client.log_artifacts(run_id, str(local), artifact_path=f"model/{folder}")
                    log_bundle_model(local, bundle, name=f"{data.name}_{folder}", run_id=run_id)
            client.set_tag(run_id, "brstnet.complete", "true")
            client.set_terminated(run_id, "FINISHED", end_time=_ms(data.end_time))
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise

    def load(self) -> dict:
        return latest_run(self._experiment, self._run_name)

    def _describe(self) -> dict[str, Any]:
        return {"run_name": self._run_name, "experiment": self._experiment}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def log_contents(client, run_id: str, data: TrackedRun) -> None:
    """Log ``data``'s params, metrics and epoch curves into run ``run_id``."""
    now = int(time.time() * 1000)
    params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(data.params.items())]
    metrics = [
        Metric(k, float(v), now, 0) for k, v in sorted(data.metrics.items()) if v is not None
    ]
    for key, values in data.histories.items():
        metrics += [
            Metric(key, float(v), now, step)
            for step, v in enumerate(values, start=1)
            if v is not None and not math.isnan(float(v))
        ]
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start : start + 500])


def latest_run(experiment: str, run_name: str) -> dict:
    """The params, metrics and tags of the latest run named ``run_name``."""
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    runs = (
        client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`mlflow.runName` = '{run_name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if found is not None
        else []
    )
    if not runs:
        raise DatasetError(f"no MLflow run named {run_name!r} in experiment {experiment!r}")
    run = runs[0]
    return {
        "run_id": run.info.run_id,
        "params": run.data.params,
        "metrics": run.data.metrics,
        "tags": run.data.tags,
    }


class MlflowParentRunDataset(MlflowChildRunDataset):
    """Save: log a run's params, metrics and tags into the ``kedro run``'s own MLflow run
    (outside a kedro-mlflow session: a top-level run named after the data). Load: that
    run's data."""

    def save(self, data: TrackedRun) -> None:
        client = MlflowClient()
        parent = self._parent(client)
        if parent is not None:
            try:
                for key, value in data.tags.items():
                    client.set_tag(parent.info.run_id, key, value)
                log_contents(client, parent.info.run_id, data)
            except MlflowException as err:  # a param logged before with another value
                logger.warning("could not log %s on run %s: %s", data.name, parent.info.run_id, err)
            return
        tags = {"mlflow.runName": data.name, **data.tags, **owner_tags()}
        run = client.create_run(self._experiment_id(client, None), run_name=data.name, tags=tags)
        try:
            log_contents(client, run.info.run_id, data)
        except BaseException:
            client.set_terminated(run.info.run_id, "FAILED")
            raise
        client.set_terminated(run.info.run_id, "FINISHED")
