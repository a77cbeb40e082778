"""Log a :class:`~brstnet.evaluation.tracking.TrackedRun` as its own MLflow run.

kedro-mlflow opens one run per ``kedro run``; to compare variants side by side in the
MLflow UI each variant gets a child run under it (``mlflow.parentRunId``), with its
params, metrics, epoch curves (metric histories), per-gene table, plots and model.
Outside a kedro-mlflow session the run is top-level in ``experiment``.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from brstnet.evaluation.tracking import TrackedRun

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
        import mlflow
        from mlflow.exceptions import MlflowException

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
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        from brstnet.mlflow_runs import owner_tags
        from brstnet.training.bundle import save_bundle

        client = MlflowClient()
        parent = self._parent(client)
        # the owner lets a later run mark this one KILLED if this process is killed
        tags = {"mlflow.runName": data.name, **data.tags, **owner_tags()}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent.info.run_id
        run = client.create_run(self._experiment_id(client, parent), run_name=data.name, tags=tags)
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in sorted(data.params.items())]
            metrics = [
                Metric(k, float(v), now, 0)
                for k, v in sorted(data.metrics.items())
                if v is not None
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
                    save_bundle(bundle, Path(tmp) / "models" / folder)
                    client.log_artifacts(
                        run_id, str(Path(tmp) / "models" / folder), artifact_path=f"model/{folder}"
                    )
            client.set_tag(run_id, "brstnet.complete", "true")
            client.set_terminated(run_id, "FINISHED")
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise

    def load(self) -> dict:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        experiment = client.get_experiment_by_name(self._experiment)
        runs = (
            client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.`mlflow.runName` = '{self._run_name}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if experiment is not None
            else []
        )
        if not runs:
            raise DatasetError(
                f"no MLflow run named {self._run_name!r} in experiment {self._experiment!r}"
            )
        run = runs[0]
        return {
            "run_id": run.info.run_id,
            "params": run.data.params,
            "metrics": run.data.metrics,
            "tags": run.data.tags,
        }

    def _describe(self) -> dict[str, Any]:
        return {"run_name": self._run_name, "experiment": self._experiment}
