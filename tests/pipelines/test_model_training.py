"""model_training + evaluation on tiny synthetic sections with SequentialRunner, and the
MLflow runs checked through MLflow's own client."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
import yaml
from kedro.runner import SequentialRunner
from mlflow.tracking import MlflowClient

from brstnet.models import ModelSpec
from brstnet.pipelines import data_processing, evaluation, feature_selection, model_training
from brstnet.pipelines.run_parameters import project_run_parameters
from brstnet.pipelines.variants import n_folds, variant_grid
from brstnet.training.bundle import load_bundle
from tests.synthetic import (
    REPO,
    dp_params,
    project_catalog,
    project_copy,
    write_section,
    write_test_encoder_cache,
)

MODELS = ("test_resnet_aux", "test_resnet_noaux", "test_encoder_probe")
REFERENCES = ("baseline_mean", "baseline_ridge", "reference_read_depth")


def _params(name: str) -> dict:
    return yaml.safe_load((REPO / f"conf/base/parameters_{name}.yml").read_text())[name]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    """dp + fs + training + evaluation of test_resnet with and without aux, and a ridge
    probe on the frozen stand-in encoder, on 3 tiny sections."""
    tmp = tmp_path_factory.mktemp("tiny")
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
    mt = _params("model_training")
    mt.update(
        epochs=2,
        batch_size=8,
        backbones=["test_resnet"],
        aux_weights=[1.0, 0.0],
        contexts=[False],  # BrST-Net's pair; the default's context model: test_kill, real_run
        checkpoint_dir=str(tmp / "ckpt"),
        probes=["test_encoder"],
        hf_cache_dir=str(write_test_encoder_cache(tmp / "hub")),
    )
    ev = _params("evaluation")
    variants, folds = variant_grid(
        {"data_processing": dp, "feature_selection": fs, "model_training": mt}
    )

    catalog = project_catalog(tmp / "project")
    for name, value in (
        ("data_processing", dp),
        ("feature_selection", fs),
        ("model_training", mt),
        ("evaluation", ev),
    ):
        catalog[f"params:{name}"] = value
    catalog["raw_manifest"] = {"root": str(root)}
    pipeline = (
        data_processing.create_pipeline().from_nodes("read_sections")
        + feature_selection.create_pipeline()
        + model_training.create_pipeline(variants=variants, n_folds=folds)
        + evaluation.create_pipeline(variants=variants, n_folds=folds)
    )
    repo_mlruns = sorted((REPO / "mlruns").rglob("*"))  # (a leftover of older runs, if any)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    try:
        # the store holds database and artifacts (nothing lands in the repository's mlruns/)
        experiment = MlflowClient().create_experiment(
            "brstnet", artifact_location=str(tmp / "artifacts")
        )
        # the run kedro-mlflow opens for a `kedro run`: the variants' runs are its children
        with mlflow.start_run(experiment_id=experiment, run_name="training"):
            SequentialRunner().run(pipeline, catalog)
    finally:
        mlflow.set_tracking_uri(previous)
    return {
        "tmp": tmp,
        "catalog": catalog,
        "variants": variants,
        "folds": folds,
        "tracking": f"sqlite:///{tmp / 'mlflow.db'}",
        "repo_mlruns": repo_mlruns,
    }


def test_variants_and_folds(tiny_run: dict) -> None:
    assert list(tiny_run["variants"]) == [
        ("test_resnet_aux", "test_resnet", 1.0, "finetune", False),
        ("test_resnet_noaux", "test_resnet", 0.0, "finetune", False),
        ("test_encoder_probe", "test_encoder", 0.0, "probe", False),
    ]
    assert tiny_run["folds"] == 2


def test_training_histories_and_bundles(tiny_run: dict) -> None:
    catalog, tmp = tiny_run["catalog"], tiny_run["tmp"]
    # fold 0 holds out A: trains on B1 alone, no inner split; fold 1 holds out B: trains
    # on A1 + A2 with an inner split by section, then keeps the best inner epoch
    assert catalog.load("test_resnet_aux_fold0.training_history")["stage"].tolist() == [
        "final",
        "final",
    ]
    history1 = catalog.load("test_resnet_aux_fold1.training_history")
    assert (
        history1["stage"].tolist() == ["inner0", "inner0"]
        and np.isfinite(history1["val_mean_r"]).all()
    )

    bundle = load_bundle(tmp / "project/data/06_models/test_resnet_aux_fold1")
    cfg = bundle.config
    assert (
        bundle.spec.backbone == "test_resnet"
        and cfg["test_patients"] == ["B"]
        and cfg["train_patients"] == ["A"]
    )
    assert bundle.spec == ModelSpec(
        "test_resnet", n_main=3, img_size=32, n_aux=2, aux_weight=1.0, depth_weight=1.0
    )
    # the depth head's scale travels in the bundle: the training spots' log read depth
    fold_input = catalog.load("model_inputs")["fold_1"]()
    train_depth = np.log(fold_input.obs.loc[fold_input.obs["role"] == "train", "total_counts"])
    assert cfg["target"]["depth_mean"] == pytest.approx(train_depth.mean())
    assert cfg["target"]["depth_std"] == pytest.approx(train_depth.std(ddof=0))
    assert cfg["target"]["transform"] == "library"  # the field's targets, the base default
    assert np.isfinite(history1["loss_depth"]).all() and np.isfinite(history1["val_depth_r"]).all()
    assert len(cfg["genes"]) == 3 and len(cfg["aux_genes"]) == 2
    # the geometry the patch store was cut with travels in the bundle
    store = catalog.load("patch_store")
    assert bundle.geometry == store.geometry and bundle.geometry.size_px == 32
    assert cfg["training"]["best_epoch"] in (1, 2) and bundle.geometry.stain_method == "macenko"
    assert bundle.build_task().model.aux_head.out_features == 2
    noaux = load_bundle(tmp / "project/data/06_models/test_resnet_noaux_fold1")
    assert noaux.spec.aux_weight == 0.0 and noaux.build_task().model.aux_head is None
    assert not list((tmp / "ckpt").rglob("*.pt"))  # checkpoints removed once the bundle is saved
    # the probe predicts the read depth too: a second ridge, folded into its depth head
    probe = load_bundle(tmp / "project/data/06_models/test_encoder_probe_fold1")
    assert probe.spec.predicts_depth and probe.build_task().model.depth_head is not None
    probe_predictions = catalog.load("test_encoder_probe_fold1.predictions")
    assert np.isfinite(probe_predictions.obs["predicted_log_depth"]).all()


def test_predictions_and_per_gene_tables(tiny_run: dict) -> None:
    catalog = tiny_run["catalog"]
    predictions = catalog.load("test_resnet_aux_fold1.predictions")
    assert set(predictions.obs["patient"]) == {"B"} and predictions.n_obs == 20
    assert {
        "observed",
        "predicted_target_scale",
        "observed_target_scale",
        "observed_counts",
    } <= set(predictions.layers)
    # library targets: log(1 + reads per 10,000 of the spot's reads over all genes)
    total = predictions.obs["total_counts"].to_numpy(float)[:, None]
    np.testing.assert_allclose(
        predictions.layers["observed_target_scale"],
        np.log1p(predictions.layers["observed_counts"] / total * 1e4),
        atol=1e-4,
    )
    # the depth head's maps: composition x depth gives counts on the training scale
    depth = predictions.obs["predicted_log_depth"].to_numpy(float)[:, None]
    np.testing.assert_allclose(
        predictions.layers["predicted_log1p"],
        np.log1p(
            np.expm1(np.maximum(predictions.layers["predicted_target_scale"], 0))
            * np.exp(depth)
            / 1e4
        ),
        rtol=1e-4,
        atol=1e-5,
    )
    for variant in (*MODELS, "baseline_mean", "baseline_ridge", "reference_read_depth"):
        table = catalog.load(f"{variant}.per_gene")
        assert {
            "gene",
            "r_A",
            "r_B",
            "median_r",
            "pooled_r",
            "mae",
            "rmse",
            "p_sign",
            "significant",
            "partial_r_A",
            "median_partial_r",
            "r_libnorm_B",
            "median_r_libnorm",
            "mean_r_libnorm",
            "r_log1p_A",
            "median_r_log1p",
            "pooled_r_log1p",
        } <= set(table.columns)
    mean = catalog.load("baseline_mean.per_gene")
    assert mean["median_r"].isna().all()  # a constant prediction has no correlation
    summary = catalog.load("evaluation_summary")
    assert set(summary["variant"]) == {*MODELS, *REFERENCES}
    assert (
        summary.set_index("variant").loc["baseline_mean", "genes_nan_r"]
        == summary.set_index("variant").loc["baseline_mean", "n_genes"]
    )


def test_mlflow_runs_through_mlflows_client(tiny_run: dict) -> None:
    client = MlflowClient(tiny_run["tracking"])
    experiment = client.get_experiment_by_name("brstnet")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"training", *MODELS, *REFERENCES}
    parent = runs.pop("training")
    assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {parent.info.run_id}
    run = runs["test_resnet_aux"]
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (
        params["backbone"] == "test_resnet"
        and params["aux_weight"] == "1.0"
        and params["patch_size_px"] == "32"
    )
    assert (
        params["split_scheme"] == "lopo"
        and params["panel_size"] == "3"
        and params["epochs"] == "2"
        and params["seed"] == "0"
    )
    metrics = run.data.metrics
    for key in (
        "median_r",
        "genes_positive",
        "genes_r_gt_0_5",
        "significant_genes",
        "aCC",
        "aMAE",
        "aRMSE",
        "fold1_best_epoch",
    ):
        assert key in metrics, key
    summary = pd.read_csv(
        tiny_run["tmp"] / "project/data/08_reporting/evaluation_summary.csv"
    ).set_index("variant")
    assert metrics["aCC"] == pytest.approx(summary.loc["test_resnet_aux", "aCC"])
    curve = client.get_metric_history(run.info.run_id, "fold1_inner0_val_mean_r")
    assert [m.step for m in curve] == [1, 2]
    # the main loss apart from the auxiliary loss, never their sum: with and without the
    # auxiliary head, the variants compare on fold<k>_<stage>_loss_main
    for name, aux in (("test_resnet_aux", True), ("test_resnet_noaux", False)):
        keys = set(runs[name].data.metrics)
        assert {"fold0_final_loss_main", "fold1_inner0_loss_main"} <= keys
        assert ("fold1_inner0_loss_aux" in keys) is aux
        assert not {"fold0_final_loss", "fold1_inner0_loss"} & keys
    aux_history = tiny_run["catalog"].load("test_resnet_aux_fold1.training_history")
    assert [
        m.value for m in client.get_metric_history(run.info.run_id, "fold1_inner0_loss_main")
    ] == pytest.approx(aux_history["loss_main"].tolist())
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"per_gene.csv", "r_histogram.png", "gene_maps.png", "model"} <= artifacts
    model_files = {a.path for a in client.list_artifacts(run.info.run_id, "model/fold0")}
    assert model_files == {"model/fold0/config.json", "model/fold0/model.safetensors"}
    assert runs["baseline_ridge"].data.params["backbone"] == "ridge on image features"


def _runs(tiny_run: dict) -> tuple[MlflowClient, str, dict]:
    client = MlflowClient(tiny_run["tracking"])
    experiment = client.get_experiment_by_name("brstnet").experiment_id
    return client, experiment, {r.info.run_name: r for r in client.search_runs([experiment])}


def test_child_runs_span_their_folds_training_and_name_the_node(tiny_run: dict) -> None:
    client, _, runs = _runs(tiny_run)
    models = tiny_run["tmp"] / "project/data/06_models"
    for name, node in (("test_resnet_noaux", "train_model"), ("test_encoder_probe", "fit_probe")):
        training = [load_bundle(models / f"{name}_fold{k}").config["training"] for k in (0, 1)]
        run = runs[name]
        assert run.info.start_time == int(min(t["started_at"] for t in training) * 1000)
        assert run.info.end_time == int(max(t["ended_at"] for t in training) * 1000)
        assert run.data.metrics["train_seconds"] == pytest.approx(
            sum(t["train_seconds"] for t in training)
        )
        assert run.data.metrics["fold1_train_seconds"] == pytest.approx(
            training[1]["train_seconds"]
        )
        assert run.data.tags["brstnet.fold1_node"] == f"{name}_fold1.{node}"
    # a baseline trains nothing: its run is the time it took to log
    assert "train_seconds" not in runs["baseline_ridge"].data.metrics


def test_the_parent_run_carries_the_best_variants_headline(tiny_run: dict) -> None:
    _, _, runs = _runs(tiny_run)
    summary = pd.read_csv(
        tiny_run["tmp"] / "project/data/08_reporting/evaluation_summary.csv"
    ).set_index("variant")
    best = summary.loc[list(MODELS), "mean_r_libnorm"].idxmax()  # the field's headline
    parent = runs["training"]
    assert parent.data.params["best_variant"] == best == parent.data.tags["brstnet.best_variant"]
    assert parent.data.params["backbone"] == runs[best].data.params["backbone"]
    assert parent.data.params["aux_weight"] == runs[best].data.params["aux_weight"]
    assert parent.data.params["patch_size_px"] == "32"
    for key in (
        "mean_r_libnorm",
        "median_partial_r",
        "median_r_log1p",
        "genes_r_gt_0_5_log1p",
        "median_r",
        "significant_genes",
        "aCC",
    ):
        assert parent.data.metrics[key] == pytest.approx(summary.loc[best, key]), key
    assert (
        parent.data.metrics["mean_r_libnorm"] >= summary.loc[list(MODELS), "mean_r_libnorm"].max()
    )


def test_the_experiment_opens_on_the_comparison_columns(tiny_run: dict) -> None:
    from brstnet.mlflow_views import COMPARISON_VIEW, EXPERIMENT_KIND_TAG, SHARED_VIEW_PREFIX

    client, experiment, runs = _runs(tiny_run)
    tags = client.get_experiment(experiment).tags
    assert tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    view = json.loads(tags[SHARED_VIEW_PREFIX + COMPARISON_VIEW])
    assert view["selectedColumns"][:3] == [
        "metrics.`mean_r_libnorm`",
        "metrics.`median_r_libnorm`",
        "metrics.`median_partial_r`",
    ]
    assert "params.`backbone`" in view["selectedColumns"]
    # every column the view selects exists on the variants' runs
    for column in view["selectedColumns"]:
        kind, name = column.split(".", 1)
        if kind in ("metrics", "params"):
            assert name.strip("`") in getattr(runs["test_resnet_aux"].data, kind), column


def test_each_fold_is_an_mlflow_model_that_predicts_from_patches(tiny_run: dict, tmp_path) -> None:
    """Logged models ("Models", the registry) whose pyfunc predicts the held-out spots as
    the evaluation did; `brstnet predict` takes a registered model's models:/ URI."""
    from brstnet.command import predict_command
    from tests.synthetic import PITCH_PX

    client, experiment, runs = _runs(tiny_run)
    tmp, catalog = tiny_run["tmp"], tiny_run["catalog"]
    logged = {m.name: m for m in client.search_logged_models([experiment])}
    assert set(logged) == {f"{v}_fold{k}" for v in MODELS for k in (0, 1)}
    model = logged["test_resnet_aux_fold1"]
    assert model.source_run_id == runs["test_resnet_aux"].info.run_id
    # database and artifacts in the temporary store: nothing written to the repository
    assert model.artifact_location.startswith(str(tmp / "artifacts"))
    assert runs["test_resnet_aux"].info.artifact_uri.startswith(str(tmp / "artifacts"))
    assert sorted((REPO / "mlruns").rglob("*")) == tiny_run["repo_mlruns"]

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tiny_run["tracking"])
    try:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
        info = pyfunc.metadata
        assert info.metadata["model"]["backbone"] == "test_resnet"
        assert info.metadata["geometry"]["size_px"] == 32
        assert info.saved_input_example_info is not None and info.signature is not None
        predictions = catalog.load("test_resnet_aux_fold1.predictions")
        rows = predictions.obs["patch_row"].to_numpy()
        store = catalog.load("patch_store")
        expression = pyfunc.predict(store.patches[rows])
        assert list(expression.columns) == list(predictions.var_names)
        np.testing.assert_allclose(
            expression.to_numpy(), predictions.layers["predicted_target_scale"], atol=1e-4
        )
        version = mlflow.register_model(f"models:/{model.model_id}", "brstnet-test-resnet-aux")
    finally:
        mlflow.set_tracking_uri(previous)
    slide = next((tmp / "her2st/data/ST-imgs/B/B1").glob("*.jpg"))
    code = predict_command(
        [
            str(slide),
            "--model",
            f"models:/brstnet-test-resnet-aux/{version.version}",
            "--out",
            str(tmp_path / "out"),
            "--pixel-size",
            f"{200 / PITCH_PX}",
            "--tracking-uri",
            tiny_run["tracking"],
        ]
    )
    assert code == 0
    result = sc.read_h5ad(tmp_path / "out" / f"{slide.stem}.h5ad")
    assert list(result.var_names) == list(predictions.var_names)
    assert result.uns["model"]["variant"] == "test_resnet_aux" and result.uns["model"]["fold"] == 1


def test_the_frozen_encoder_probe_predicts_through_the_encoder(tiny_run: dict) -> None:
    """Features once per patch, a ridge per fold, folded into the head: the bundle's
    predictions through the encoder are the ridge's on the stored features."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from brstnet.features.rows import held_out_rows, training_rows
    from brstnet.training.probe import ALPHAS
    from tests.synthetic import stand_in_encoder

    catalog, tmp = tiny_run["catalog"], tiny_run["tmp"]
    features = catalog.load("encoder_features_test_encoder")
    store = catalog.load("patch_store")
    assert features.shape == (len(store.patches), stand_in_encoder().num_features)
    bundle = load_bundle(tmp / "project/data/06_models/test_encoder_probe_fold1")
    assert bundle.spec.backbone == "test_encoder" and bundle.spec.mean == (0.6, 0.5, 0.7)
    history = catalog.load("test_encoder_probe_fold1.training_history")
    assert history["stage"].tolist() == ["probe"] and history["alpha"].iloc[0] in ALPHAS
    fold = catalog.load("model_inputs")["fold_1"]
    fold = fold() if callable(fold) else fold
    rows = fold.obs["patch_row"].to_numpy()
    train, test = training_rows(fold), held_out_rows(fold)
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
    ridge.fit(features[rows[train]], np.asarray(fold.X)[train])
    predictions = catalog.load("test_encoder_probe_fold1.predictions")
    np.testing.assert_allclose(
        predictions.X, ridge.predict(features[rows[test]]), rtol=1e-3, atol=1e-3
    )
    # the encoder in the bundle is the pretrained one, untouched
    trunk = bundle.build_task().model.trunk.state_dict()
    for key, value in stand_in_encoder().state_dict().items():
        assert torch.equal(trunk[key], value), key


def test_fold_count_follows_the_split_settings() -> None:
    dp = {"dataset": "her2st", "sections": ["B4", "C2", "C3", "E1"]}
    assert n_folds(dp, {"split": {"scheme": "lopo"}}) == 3
    assert n_folds(dp, {"split": {"scheme": "kfold", "k": 2}}) == 2
    assert n_folds(dp, {"split": {"scheme": "fixed", "test_patients": ["B"]}}) == 1


def test_default_and_brstnet_configurations(monkeypatch, tmp_path) -> None:
    """Outside a session the registry reads KEDRO_ENV's configuration (project conf only)."""
    held = project_run_parameters()
    if held is not None:  # no session's parameters left by an earlier test's session
        monkeypatch.setattr(held, "session", None)
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    monkeypatch.chdir(project_copy(tmp_path / "project"))
    variants, folds = variant_grid()
    assert [v[0] for v in variants] == ["resnet18_aux_ctx"] and folds == 2
    monkeypatch.setenv("KEDRO_ENV", "brstnet")
    variants, _ = variant_grid()
    assert len(variants) == 20 and {v[2] for v in variants} == {0.0, 1.0}
    assert "vit_base_patch32_aux" in [v[0] for v in variants]
