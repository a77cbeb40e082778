"""kill -9 of a `kedro run` during training (issue 17).

The run is killed as soon as its first checkpoint appears; the rerun resumes from the
checkpoint and ends with an uninterrupted run's numbers, byte for byte; nothing is left
half-written or lying around, and the killed run's MLflow run is marked KILLED.
Tiny configuration: three synthetic He et al. sections of two patients (two folds),
test_resnet at 32 px, no robustness conditions. The uninterrupted reference runs at the
same time as the run that is killed (one thread each, so the numbers do not depend on
the thread count).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from tests.layouts import tiny_he2020_section, write_he2020_metadata
from tests.synthetic import project_copy

SECTIONS = {"BC1_C1": ("BC1", "C1"), "BC1_C2": ("BC1", "C2"), "BC2_C1": ("BC2", "C1")}
#: Outputs compared byte for byte (the training histories without their images_per_s,
#: the bundles' config.json without when they trained: see SAME_CONFIG).
SAME_BYTES = (
    "data/08_reporting/evaluation_summary.csv",
    "data/08_reporting/evaluation/test_resnet_aux_ctx_metrics.json",
    "data/08_reporting/evaluation/test_resnet_aux_ctx_per_gene.csv",
    "data/06_models/test_resnet_aux_ctx_fold0/model.safetensors",
    "data/06_models/test_resnet_aux_ctx_fold1/model.safetensors",
)
SAME_CONFIG = (
    "data/06_models/test_resnet_aux_ctx_fold0/config.json",
    "data/06_models/test_resnet_aux_ctx_fold1/config.json",
)
#: When a fold trained (config.json's training block): the only part that may differ.
TRAINING_SPAN = ("started_at", "ended_at", "train_seconds")


def _settings(path: Path) -> dict:
    config = json.loads(path.read_text())
    config["training"] = {k: v for k, v in config["training"].items() if k not in TRAINING_SPAN}
    return config


def _tiny_project(root: Path, data: Path) -> Path:
    local = {
        "data_processing": {
            "dataset": "he2020",
            "sections": list(SECTIONS),
            "source": {"local_dir": str(data)},
            "qc": {"min_total_reads": 0},
            "stain": {"method": None},
            "patches": {"window_um": 150, "size_px": 32},
        },
        "feature_selection": {"panel": {"n_genes": 3}},
        "model_training": {
            "backbones": ["test_resnet"],
            "aux_weights": [1.0],
            "epochs": 3,
            "batch_size": 8,
            "device": "cpu",
        },
        "evaluation": {"device": "cpu", "robustness": {"enabled": False}},
    }
    return project_copy(root, local)


def _kedro_run(project: Path, log: Path) -> subprocess.Popen:
    """``kedro run --pipelines=training`` in ``project``, its console output into ``log``
    (a file, not a pipe: nobody reads a pipe while the test waits, and a full one blocks)."""
    env = {
        **os.environ,
        "DO_NOT_TRACK": "true",
        "KEDRO_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "COLUMNS": "300",  # rich's console: one log record, one line
    }
    with open(log, "w") as handle:
        return subprocess.Popen(
            [Path(sys.executable).parent / "kedro", "run", "--pipelines=training"],
            cwd=project,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def _finish(run: subprocess.Popen, log: Path) -> str:
    run.wait(timeout=240)
    out = log.read_text()
    assert run.returncode == 0, out[-3000:]
    return out


def test_kill_9_during_training_then_a_rerun_gives_the_uninterrupted_numbers(
    tmp_path: Path,
) -> None:
    data = tmp_path / "he2020"
    rows = [
        tiny_he2020_section(data, patient=p, replicate=r, seed=i, grid=(6, 5))[0]
        for i, (p, r) in enumerate(SECTIONS.values())
    ]
    write_he2020_metadata(data, rows)
    reference = _tiny_project(tmp_path / "reference", data)
    killed = _tiny_project(tmp_path / "killed", data)

    uninterrupted = _kedro_run(reference, tmp_path / "reference.log")
    victim = _kedro_run(killed, tmp_path / "killed.log")
    checkpoints = killed / "data/06_models/checkpoints"
    deadline = time.monotonic() + 150
    while not any(checkpoints.rglob("*.pt")):
        assert victim.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 150 s"
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / "data/06_models/test_resnet_aux_ctx_fold1").exists()  # during training

    rerun = _finish(_kedro_run(killed, tmp_path / "rerun.log"), tmp_path / "rerun.log")
    assert "test_resnet_aux_ctx fold 0 final: resuming from" in rerun
    assert "final.pt after epoch" in rerun
    _finish(uninterrupted, tmp_path / "reference.log")

    for relpath in SAME_BYTES:
        assert (killed / relpath).read_bytes() == (reference / relpath).read_bytes(), relpath
    for relpath in SAME_CONFIG:
        assert _settings(killed / relpath) == _settings(reference / relpath), relpath
    for fold in (0, 1):
        relpath = f"data/08_reporting/training/test_resnet_aux_ctx_fold{fold}_history.csv"
        pd.testing.assert_frame_equal(
            pd.read_csv(killed / relpath).drop(columns="images_per_s"),
            pd.read_csv(reference / relpath).drop(columns="images_per_s"),
        )
    # nothing half-written left behind: no temporary file or folder, no checkpoint
    leftovers = [p for p in (killed / "data").rglob(".*") if p.name != ".gitkeep"]
    assert leftovers == [] and not list(checkpoints.rglob("*.pt"))
    # the killed run's MLflow run is KILLED, not RUNNING forever; the rerun's FINISHED
    client = MlflowClient(tracking_uri=f"sqlite:///{killed / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("brstnet")
    parents = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`mlflow.runName` = 'training'",
        order_by=["attributes.start_time ASC"],
    )
    assert [r.info.status for r in parents] == ["KILLED", "FINISHED"]
    assert f"MLflow run {parents[0].info.run_id} (training) was left RUNNING" in rerun
