"""The pretraining pipeline and what model_training and evaluation make of it, on tiny
synthetic sections with SequentialRunner: one encoder per fold from its training
patients' slides only, fine-tuning from it (init: pretrained), the PCA + ridge probe on
it (ssl_probe), and the registry's names and defaults."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import yaml
from kedro.runner import SequentialRunner
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from brstnet.config import ProjectParams
from brstnet.pipelines import (
    data_processing,
    evaluation,
    feature_selection,
    model_training,
    pretraining,
)
from brstnet.pipelines.variants import pretrained_tags, variant_grid
from brstnet.pretraining.windows import fold_sections
from brstnet.training.bundle import load_bundle
from tests.synthetic import REPO, dp_params, project_catalog, write_section


def _params(name: str) -> dict:
    return yaml.safe_load((REPO / f"conf/base/parameters_{name}.yml").read_text())[name]


def _settings(**model_training) -> dict:
    mt = {**_params("model_training"), "backbones": ["test_resnet"], "aux_weights": [1.0]}
    return {
        "data_processing": dp_params(),
        "feature_selection": _params("feature_selection"),
        "model_training": {**mt, **model_training},
        "pretraining": {**_params("pretraining"), "backbone": "test_resnet"},
    }


def test_the_default_training_pipeline_has_no_pretraining() -> None:
    params = _settings()
    assert [v.name for v in variant_grid(params).variants] == ["test_resnet_aux_ctx"]
    assert pretrained_tags(params) == {}
    assert _params("model_training")["init"] is None
    assert _params("model_training")["ssl_probe"] is False


def test_ssl_variants_are_named_apart_and_read_their_folds_trunks() -> None:
    params = _settings(init="pretrained", ssl_probe=True)
    names = [v.name for v in variant_grid(params).variants]
    assert names == ["test_resnet_aux_ctx_ssl", "test_resnet_ssl_probe"]
    assert pretrained_tags(params) == {n: "test_resnet" for n in names}
    params["pretraining"]["include_target_slides"] = True
    names = [v.name for v in variant_grid(params).variants]
    assert names == ["test_resnet_aux_ctx_ssl_tgt", "test_resnet_ssl_probe_tgt"]
    pipe = model_training.create_pipeline(variant_grid(params).variants, 2, pretrained_tags(params))
    assert "pretrained_test_resnet_tgt_fold1" in pipe.inputs()
    assert {n.name for n in pretraining.create_pipeline("test_resnet_tgt", 2).nodes} == {
        "cut_tissue_windows",
        "pretrain_test_resnet_tgt_fold0",
        "pretrain_test_resnet_tgt_fold1",
    }


def test_settings_that_contradict_each_other_are_refused() -> None:
    params = _settings(init="pretrained", backbones=["test_resnet", "test_vit"])
    with pytest.raises(ValidationError, match="set model_training.backbones: \\[test_resnet\\]"):
        ProjectParams.model_validate(params)
    params = _settings(init="pretrained", initial_weights="w.safetensors")
    with pytest.raises(ValidationError, match="keep one"):
        ProjectParams.model_validate(params)
    ProjectParams.model_validate(_settings(init="pretrained", ssl_probe=True))


@pytest.fixture(scope="module")
def ssl_run(tmp_path_factory) -> dict:
    """dp + fs + pretraining + fine-tuning from the trunks + the SSL probe + evaluation."""
    tmp = tmp_path_factory.mktemp("ssl")
    root = tmp / "her2st"
    for seed, section in enumerate(("A1", "A2", "B1")):
        write_section(root, section, seed=seed, n_x=5, n_y=4)
    dp = dp_params(
        sections=["A1", "A2", "B1"],
        qc={"min_total_reads": 0},
        stain={"reference_section": None},
        patches={"window_um": 150, "size_px": 32},
    )
    fs = _params("feature_selection")
    fs["panel"] = {**fs["panel"], "n_genes": 3}
    mt = {
        **_params("model_training"),
        "epochs": 1,
        "batch_size": 8,
        "backbones": ["test_resnet"],
        "aux_weights": [1.0],
        "checkpoint_dir": str(tmp / "ckpt"),
        "init": "pretrained",
        "ssl_probe": True,
    }
    pt = {
        **_params("pretraining"),
        "backbone": "test_resnet",
        "epochs": 2,
        "batch_size": 8,
        "projection_hidden": 16,
        "projection_dim": 8,
        "window_stride_um": 100,
        "checkpoint_dir": str(tmp / "ckpt"),
    }
    ev = {**_params("evaluation"), "robustness": {"enabled": False}}
    params = {"data_processing": dp, "feature_selection": fs, "model_training": mt}
    params["pretraining"] = pt
    variants, folds = variant_grid(params)
    catalog = project_catalog(tmp / "project")
    for name, value in params.items():
        catalog[f"params:{name}"] = value
    catalog["params:evaluation"] = ev
    catalog["raw_manifest"] = {"root": str(root)}
    pipeline = (
        data_processing.create_pipeline().from_nodes("read_sections")
        + feature_selection.create_pipeline()
        + pretraining.create_pipeline("test_resnet", folds)
        + model_training.create_pipeline(variants, folds, pretrained_tags(params))
        + evaluation.create_pipeline(variants=variants, n_folds=folds)
    )
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    try:
        experiment = MlflowClient().create_experiment(
            "brstnet", artifact_location=str(tmp / "artifacts")
        )
        with mlflow.start_run(experiment_id=experiment, run_name="pretraining"):
            SequentialRunner().run(pipeline, catalog)
    finally:
        mlflow.set_tracking_uri(previous)
    return {"tmp": tmp, "catalog": catalog, "tracking": f"sqlite:///{tmp / 'mlflow.db'}"}


def test_each_fold_pretrains_on_its_training_patients_windows(ssl_run: dict) -> None:
    catalog, tmp = ssl_run["catalog"], ssl_run["tmp"]
    windows = catalog.load("pretraining_windows")
    store = catalog.load("patch_store")
    assert windows.geometry == store.geometry  # window, size, threshold, stain reference
    assert windows.patches.shape[1:] == (32, 32, 3)
    assert len(windows) > len(store)  # more tissue windows than spots
    splits = catalog.load("splits")
    for fold in (0, 1):
        trunk = catalog.load(f"pretrained_test_resnet_fold{fold}")
        assert trunk.metadata["sections"] == fold_sections(splits, fold)
        held_out = splits[(splits["fold"] == fold) & (splits["role"] == "test")]["section"]
        assert not set(held_out) & set(trunk.metadata["sections"])
        history = catalog.load(f"pretraining_history_test_resnet_fold{fold}")
        assert history["epoch"].tolist() == [1, 2] and np.isfinite(history["loss"]).all()
    assert not list((tmp / "ckpt").rglob("*.pt"))  # checkpoints go once the weights are saved


def test_fine_tuning_starts_from_the_folds_trunk(ssl_run: dict) -> None:
    tmp = ssl_run["tmp"]
    for fold in (0, 1):
        bundle = load_bundle(tmp / f"project/data/06_models/test_resnet_aux_ctx_ssl_fold{fold}")
        used = bundle.config["training"]["initial_weights"]
        assert used.endswith(f"data/06_models/pretrained/test_resnet_fold{fold}.safetensors")


def test_the_ssl_probe_is_its_own_evaluated_variant(ssl_run: dict) -> None:
    catalog, tmp = ssl_run["catalog"], ssl_run["tmp"]
    bundle = load_bundle(tmp / "project/data/06_models/test_resnet_ssl_probe_fold1")
    training = bundle.config["training"]
    assert training["probe"] == "pca_ridge_hest" and training["pretrained"]["fold"] == 1
    assert 1 <= training["pca_dims"] <= 256
    # the depth head's ridge too, on the same standardised principal components
    assert bundle.spec.depth_weight == 1.0 and bundle.build_task().model.depth_head is not None
    history = catalog.load("test_resnet_ssl_probe_fold1.training_history")
    assert history["stage"].tolist() == ["probe"]
    summary = catalog.load("evaluation_summary")
    assert {"test_resnet_ssl_probe", "test_resnet_aux_ctx_ssl"} <= set(summary["variant"])
    client = MlflowClient(ssl_run["tracking"])
    experiment = client.get_experiment_by_name("brstnet")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    run = runs["pretrain_test_resnet_fold0"]
    assert run.data.params["temperature"] == "0.2" and run.data.params["sections"] == "B1"
    losses = client.get_metric_history(run.info.run_id, "ssl_loss")
    assert [m.step for m in losses] == [1, 2]
    assert run.data.metrics["windows"] > 0 and run.data.tags["brstnet.kind"] == "pretraining"
