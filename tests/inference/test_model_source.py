"""Loading a model from an MLflow store never changes the process's tracking URI."""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from brstnet.inference.models import load_model
from brstnet.models import ModelSpec
from brstnet.st.geometry import PatchGeometry
from brstnet.training.bundle import ModelBundle, save_bundle


def test_runs_uri_is_read_from_the_given_store_only(tmp_path: Path) -> None:
    spec = ModelSpec("test_resnet", n_main=2, img_size=16)
    config = {
        "variant": "test_resnet_noaux",
        "fold": 0,
        "model": spec.to_dict(),
        "geometry": PatchGeometry(window_um=100.0, size_px=16).to_dict(),
        "genes": ["ERBB2", "GRB7"],
        "target": {"transform": "log1p", "zscore": True, "mean": [1.0, 2.0], "std": [0.5, 0.5]},
    }
    save_bundle(ModelBundle(config, spec.build(seed=0).state_dict()), tmp_path / "bundle")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(tmp_path / "bundle"), "model/fold0")
    client.set_terminated(run.info.run_id)

    before = mlflow.get_tracking_uri()
    bundle = load_model(f"runs:/{run.info.run_id}/model/fold0", tracking_uri=store)
    assert mlflow.get_tracking_uri() == before
    assert bundle.spec == spec and bundle.geometry.window_um == 100.0
