"""Helpers of the runner tests: a tiny synthetic project run in real Kedro sessions
(fixtures in tests/runners/conftest.py)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

PIPELINES = ["model_training", "evaluation"]
VARIANTS = ("test_resnet_aux", "test_resnet_noaux")
NAMESPACES = {f"{v}_fold{k}" for v in VARIANTS for k in (0, 1)}
DASK = {
    "cluster": "local",
    "local": {"n_workers": 2},
    "torch_threads": 1,  # the sequential runs here use 1 torch thread too
    "dashboard_address": "127.0.0.1:0",
    "retries": 2,
}


def tiny_parameters(root: Path) -> dict:
    return {
        "data_processing": {
            "sections": ["A1", "A2", "B1"],
            "source": {"local_dir": str(root)},
            "qc": {"min_total_reads": 0},
            "stain": {"reference_section": "A1"},
            "patches": {"window_um": 150, "size_px": 32},
        },
        "feature_selection": {"panel": {"n_genes": 3}},
        "model_training": {
            "epochs": 2,
            "batch_size": 8,
            "backbones": ["test_resnet"],
            "aux_weights": [1.0, 0.0],
            "contexts": [False],  # these tests are about where trainings run, not the model
        },
    }


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def in_project(project: Path):
    """Work in ``project`` with 1 torch thread; restore cwd, threads and MLflow after."""
    cwd, threads, uri = Path.cwd(), torch.get_num_threads(), mlflow.get_tracking_uri()
    os.chdir(project)
    torch.set_num_threads(1)
    try:
        bootstrap_project(project)
        yield
    finally:
        while mlflow.active_run() is not None:  # leave no run of this store active
            mlflow.end_run()
        mlflow.set_tracking_uri(uri)
        torch.set_num_threads(threads)
        os.chdir(cwd)


def run_session(project: Path, runner, **run_kwargs) -> list[str]:
    """``kedro run`` in ``project`` with ``runner``; returns the project's log messages
    (records from the Dask workers are forwarded to this process)."""
    handler = Messages()
    project_logger = logging.getLogger("brstnet")
    with in_project(project):
        level = project_logger.level
        project_logger.addHandler(handler)
        project_logger.setLevel(logging.INFO)
        try:
            with KedroSession.create(project_path=project) as session:
                session.run(runner=runner, **run_kwargs)
        finally:
            project_logger.removeHandler(handler)
            project_logger.setLevel(level)
    return handler.messages


def own_tracking_store(project: Path) -> None:
    """An absolute tracking URI per project: MLflow caches its store by URI, so with the
    project's relative ``sqlite:///mlflow.db`` every project in this process would share
    the first one's database."""
    uri = f"sqlite:///{project / 'mlflow.db'}"
    (project / "conf/local/mlflow.yml").write_text(
        yaml.safe_dump({"server": {"mlflow_tracking_uri": uri}})
    )


def copy_of(prepared: Path, dest: Path, dask: dict | None = None) -> Path:
    shutil.copytree(prepared, dest)
    own_tracking_store(dest)
    if dask is not None:
        (dest / "conf/local/dask.yml").write_text(yaml.safe_dump(dask))
    return dest


def per_gene(project: Path, variant: str) -> pd.DataFrame:
    return pd.read_csv(project / f"data/08_reporting/evaluation/{variant}_per_gene.csv")


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
    numeric = a.select_dtypes("number").columns
    assert len(numeric) > 5
    np.testing.assert_allclose(a[numeric], b[numeric], rtol=0, atol=1e-6, equal_nan=True)
    others = [c for c in a.columns if c not in numeric]
    pd.testing.assert_frame_equal(a[others], b[others])


def act_on_training_worker(runner, project: Path, namespace: str, act, out: dict) -> None:
    """Once ``namespace`` has written a checkpoint, call ``act(client, worker, pid)`` on
    the Dask worker training it (for a thread beside the run; ``out["stop"]`` ends the
    wait); ``out`` gets the pid, the worker, the checkpoints and what ``act`` returns.

    The worker holding the training is looked up at every poll until the checkpoint
    appears (a queued task may still move to another worker; a running one stays), and
    the checkpoint is watched on the local disk: ``act`` runs within one poll of it, with
    no scheduler round trip in between in which a tiny model could finish first.
    """
    folder = project / "data/06_models/checkpoints" / namespace
    deadline = time.monotonic() + 300
    worker = pid = None
    while time.monotonic() < deadline and not out.get("stop"):
        client = runner.client
        if worker is not None and any(folder.glob("*.pt")):
            checkpoints = sorted(folder.glob("*.pt"))
            done = act(client, worker, pid) or {}
            out.update(pid=pid, worker=worker, checkpoints=checkpoints, **done)
            return
        if client is not None:
            holding = [
                w
                for w, keys in client.processing().items()
                if any(str(k).startswith(f"{namespace}.train_model-") for k in keys)
            ]
            if holding and holding[0] != worker:
                worker = holding[0]
                pid = client.run(os.getpid, workers=[worker])[worker]
        time.sleep(0.01)
