"""MLflow runs left RUNNING by a killed `kedro run` are marked KILLED by the next tracked
run (issue 17); runs of live processes, other hosts or unknown owners are left alone."""

from __future__ import annotations

import json
import logging

import mlflow
import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro_mlflow.framework.hooks.mlflow_hook import mlflow_hook
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from brstnet.hooks import TrackingHooks
from brstnet.mlflow_runs import OWNER_TAG
from brstnet.mlflow_views import COMPARISON_VIEW, SHARED_VIEW_PREFIX
from brstnet.processes import Owner
from tests.synthetic import gone_process_owner, project_copy


def test_the_next_tracked_run_marks_runs_of_killed_processes_killed(store, caplog) -> None:
    """Failed before: runs of a killed `kedro run` stayed RUNNING forever."""
    client = store
    experiment = client.create_experiment("brstnet")
    other = client.create_experiment("another project")
    dead = gone_process_owner().token

    def running(name: str, experiment_id: str = experiment, **tags: str) -> str:
        return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id

    killed = running("training", **{OWNER_TAG: dead})
    killed_child = running("resnet18_aux", **{"mlflow.parentRunId": killed})
    owned_child = running("resnet18_noaux", **{"mlflow.parentRunId": killed, OWNER_TAG: dead})
    live = running("a live run", **{OWNER_TAG: Owner.current().token})
    remote = running("elsewhere", **{OWNER_TAG: "gpu-node-7~4242~1700000000"})
    unknown = running("started in a notebook")
    other_project = running("training", other, **{OWNER_TAG: dead})
    finished = running("finished", **{OWNER_TAG: dead})
    client.set_terminated(finished, "FINISHED")

    # kedro-mlflow starts this run's parent run, then the project hook runs
    with mlflow.start_run(experiment_id=experiment, run_name="training") as current:
        with caplog.at_level(logging.WARNING):
            TrackingHooks().before_pipeline_run({}, None, None)
        status = {r: client.get_run(r).info.status for r in (killed, killed_child, owned_child)}
        assert status == dict.fromkeys((killed, killed_child, owned_child), "KILLED")
        for run in (live, remote, unknown, other_project, current.info.run_id):
            assert client.get_run(run).info.status == "RUNNING", client.get_run(run).info.run_name
        assert client.get_run(finished).info.status == "FINISHED"
        # the current run names its owner, so that a kill of this process is found too
        assert client.get_run(current.info.run_id).data.tags[OWNER_TAG] == Owner.current().token
    assert f"MLflow run {killed} (training) was left RUNNING by a killed process" in caplog.text
    assert caplog.text.count("marked KILLED") == 3


def test_no_tracked_run_no_sweep(store) -> None:
    """data_processing and feature_selection open no MLflow run: nothing is touched."""
    client = store
    experiment = client.create_experiment("brstnet")
    run = client.create_run(experiment, tags={OWNER_TAG: gone_process_owner().token})
    TrackingHooks().before_pipeline_run({}, None, None)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"


def test_a_tracking_store_that_fails_does_not_stop_the_run(store, monkeypatch, caplog) -> None:
    def unavailable(*args, **kwargs):
        raise MlflowException("the tracking server is unavailable")

    monkeypatch.setattr(MlflowClient, "search_runs", unavailable)
    with mlflow.start_run(experiment_id=store.create_experiment("brstnet")):
        TrackingHooks().before_pipeline_run({}, None, None)  # no exception
    assert "could not look for MLflow runs left RUNNING by killed runs" in caplog.text
    assert "the tracking server is unavailable" in caplog.text


def test_a_new_session_forgets_the_previous_sessions_mlflow_run(tmp_path, monkeypatch) -> None:
    """kedro-mlflow's hook is one object per process: a session whose pipeline has tracking
    off must not reopen the last session's run (in another project's store) at its nodes."""
    project = project_copy(tmp_path / "project")
    monkeypatch.chdir(project)
    bootstrap_project(project)
    mlflow_hook.run_id = "0123456789abcdef0123456789abcdef"  # the last session's run
    with KedroSession.create(project_path=project) as session:
        session.load_context()
    assert mlflow_hook.run_id is None


def test_a_damaged_tracking_store_is_named_before_mlflow_opens_it(tmp_path, monkeypatch) -> None:
    """Failed before: sqlite3.DatabaseError "file is not a database" with its SQL, the file
    not named."""
    project = project_copy(tmp_path / "project")
    (project / "mlflow.db").write_bytes(b"this is not an sqlite file" * 40)
    monkeypatch.chdir(project)
    bootstrap_project(project)
    with pytest.raises(ValueError) as err, KedroSession.create(project_path=project) as session:
        session.load_context()
    store = (project / "mlflow.db").resolve()
    assert str(err.value).startswith(
        f"the MLflow tracking store {store} is not an SQLite database (damaged, or another "
        f"file): move it aside (mv {store} {store}.broken)"
    )
    (project / "mlflow.db").unlink()  # a new store is created where there is none
    with KedroSession.create(project_path=project) as session:
        session.load_context()


def _started(run) -> int:
    return run.info.start_time


@pytest.mark.real_data
def test_a_tracked_kedro_run_carries_its_best_variant_system_metrics_and_view(real_run) -> None:
    """The `kedro run` of the real-data fixture, as kedro-mlflow records it: the
    experiment opens in the model-training view on the comparison columns with this run
    expanded; the run holds the best variant's headline and MLflow's system metrics."""
    client = MlflowClient(f"sqlite:///{real_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("brstnet")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "training"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {r.info.run_name for r in children} >= {"test_resnet_aux_ctx", "baseline_ridge"}
    view = json.loads(experiment.tags[SHARED_VIEW_PREFIX + COMPARISON_VIEW])
    # the latest tracked `kedro run` opens expanded (the inference test may run one later)
    latest = max((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=_started)
    assert view["runsExpanded"] == {latest.info.run_id: True}
    summary = pd.read_csv(real_run / "data/08_reporting/evaluation_summary.csv")
    row = summary.set_index("variant").loc["test_resnet_aux_ctx"]  # the one trained variant
    assert parent.data.params["best_variant"] == "test_resnet_aux_ctx"
    assert parent.data.params["backbone"] == "test_resnet"
    assert parent.data.metrics["median_r"] == pytest.approx(row["median_r"])
    assert parent.data.metrics["genes_r_gt_0_5"] == row["genes_r_gt_0_5"]
    # MLflow's own system metrics, sampled while the run lasted
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        parent.data.metrics
    )
    memory = client.get_metric_history(parent.info.run_id, "system/system_memory_usage_megabytes")
    assert memory and all(m.value > 0 for m in memory)
