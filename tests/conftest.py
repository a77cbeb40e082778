"""Shared fixtures: a tiny synthetic her2st folder, the real her2st copy and a real run.

Helpers live in :mod:`tests.synthetic`; this file holds fixtures only.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from tests.synthetic import HER2ST, project_copy, write_section

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")


@pytest.fixture
def tiny_her2st(tmp_path: Path) -> Path:
    """A her2st-layout folder with two tiny sections of patients A and B."""
    root = tmp_path / "her2st"
    write_section(root, "A1", seed=1)
    write_section(root, "B1", seed=2)
    return root


@pytest.fixture(scope="session")
def her2st_dir() -> Path:
    """The real her2st copy; its absence is a failure, not a skip."""
    if not (HER2ST / "data" / "ST-cnts").is_dir():
        pytest.fail(f"real her2st data not found at {HER2ST}; set BRSTNET_HER2ST_DIR")
    return HER2ST


@pytest.fixture(scope="session")
def real_run(her2st_dir: Path, tmp_path_factory) -> Path:
    """`kedro run --pipelines=training` on B4, C2 and C3 with a tiny backbone for one
    epoch, in a copy of the project (settings in its conf/local, as a user would)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    local = {
        "data_processing": {
            "sections": ["B4", "C2", "C3"],
            "source": {"local_dir": str(her2st_dir)},
        },
        "model_training": {"backbones": ["test_resnet"], "aux_weights": [1.0], "epochs": 1},
    }
    project = project_copy(tmp_path_factory.mktemp("run") / "project", local)
    cwd = Path.cwd()
    try:
        os.chdir(project)  # kedro resolves the catalog's relative paths against it
        bootstrap_project(project)
        with KedroSession.create(project_path=project) as session:
            session.run(pipeline_name="training")
    finally:
        os.chdir(cwd)
        import mlflow

        while mlflow.active_run() is not None:  # leave no run of this store active for other tests
            mlflow.end_run()
    return project


REAL_DATA_FIXTURES = {"her2st_dir", "real_run"}


def pytest_collection_modifyitems(config, items) -> None:
    """`real_data` marks exactly the tests that read ../shared: `-m "not real_data"` then
    runs without it, and a data-free test is never skipped with the real-data ones."""
    wrong = []
    for item in items:
        uses = bool(REAL_DATA_FIXTURES & set(getattr(item, "fixturenames", ())))
        marked = item.get_closest_marker("real_data") is not None
        if uses != marked:
            wrong.append(f"{item.nodeid} ({'unmarked' if uses else 'marked'})")
    if wrong:
        raise pytest.UsageError(
            "real_data must mark exactly the tests using her2st_dir / real_run:\n  "
            + "\n  ".join(wrong)
        )


@pytest.fixture
def store(tmp_path: Path, monkeypatch):
    """A temporary tracking store for the test; afterwards the tracking URI (and the
    MLFLOW_TRACKING_URI variable MLflow sets with it) are as before, unset included.
    No system-metrics thread outlives the test (the hooks' pipeline never ends here)."""
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")

    with _use_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        try:
            yield MlflowClient()
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
