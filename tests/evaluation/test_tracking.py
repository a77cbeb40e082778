"""The MLflow run record of a variant, as plain data (no MLflow)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from brstnet.config import FeatureSelectionParams
from brstnet.evaluation.tracking import build_tracked_run, numeric_metrics

PER_GENE = pd.DataFrame({"gene": ["G1", "G2"], "median_r": [0.5, np.nan]})
METRICS = {"variant": "v", "n_genes": 2, "aCC": 0.25, "flag": True}
FS = FeatureSelectionParams.model_validate(
    {"split": {"scheme": "kfold", "k": 2, "seed": 7}, "panel": {"n_genes": 2}}
)


def _model(fold: int, patients: list[str]) -> SimpleNamespace:
    training = {
        "epochs": 3,
        "final": "retrain",
        "optimizer": "adamw",
        "lr": 1e-3,
        "batch_size": 8,
        "seed": 0,
        "best_epoch": fold + 2,
        # fold 1 had no inner split (one training section): null in config.json
        "inner_val_median_r": 0.4 if fold == 0 else None,
        "inner_val_median_partial_r": 0.05 if fold == 0 else None,
        "started_at": 1000.0 + 100 * fold,
        "ended_at": 1050.0 + 100 * fold,
        "train_seconds": 50.0,
    }
    config = {
        "model": {"backbone": "test_resnet", "aux_weight": 1.0, "img_size": 32, "n_aux": 2},
        "geometry": {"window_um": 150.0, "size_px": 32},
        "aux_genes": ["X", "Y"],
        "test_patients": patients,
        "training": training,
    }
    return SimpleNamespace(config=config)


def _history() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stage": ["inner0", "inner0", "final", "final"],
            "epoch": [2, 1, 1, 2],
            "loss": [0.8, 1.2, 1.0, 0.6],  # main + aux: not logged
            "loss_main": [0.5, 0.9, 0.8, 0.4],
            "val_mean_r": [0.3, 0.1, np.nan, np.nan],
            "loss_aux": [0.3, 0.3, 0.2, 0.2],
        }
    )


def test_numeric_metrics_drop_strings_and_bools() -> None:
    assert numeric_metrics(METRICS) == {"n_genes": 2, "aCC": 0.25}


def test_baseline_run() -> None:
    run = build_tracked_run(
        PER_GENE, METRICS, "hist", "maps", FS, variant="baseline_ridge", kind="baseline"
    )
    assert run.name == "baseline_ridge" and run.tags == {"brstnet.kind": "baseline"}
    assert run.params == {
        "variant": "baseline_ridge",
        "kind": "baseline",
        "split_scheme": "kfold",
        "panel_method": "top_mean",
        "panel_size": 2,
        "target_transform": "library",
        "target_smoothing": "none",
        "split_seed": 7,
        "backbone": "ridge on image features",
        "aux_weight": 0.0,
    }
    assert run.metrics == {"n_genes": 2, "aCC": 0.25}
    assert run.images == {"r_histogram.png": "hist", "gene_maps.png": "maps"}
    assert list(run.tables) == ["per_gene.csv"]
    assert run.tables["per_gene.csv"].index.tolist() == ["G1", "G2"]
    assert run.histories == {} and run.models == {}
    assert run.start_time is None and run.end_time is None  # logged when it is logged


def test_model_run_has_each_folds_settings_curves_and_model() -> None:
    models = [_model(0, ["A"]), _model(1, ["B", "C"])]
    run = build_tracked_run(
        PER_GENE,
        METRICS,
        "hist",
        "maps",
        FS,
        variant="m",
        kind="model",
        histories=[_history(), _history()],
        models=models,
    )
    assert run.params["backbone"] == "test_resnet" and run.params["n_aux_genes"] == 2
    assert run.params["aux_weight"] == 1.0 and run.params["window_um"] == 150.0
    assert run.params["patch_size_px"] == 32 and run.params["epochs"] == 3
    assert run.params["fold0_test_patients"] == "A" and run.params["fold1_test_patients"] == "B,C"
    assert run.metrics["fold0_best_epoch"] == 2 and run.metrics["fold1_best_epoch"] == 3
    assert run.metrics["fold0_inner_val_median_r"] == 0.4
    assert run.metrics["fold0_inner_val_median_partial_r"] == 0.05
    assert "fold1_inner_val_median_r" not in run.metrics
    # curves in epoch order: the main loss apart from the auxiliary one, never their sum;
    # all-NaN columns (final val_mean_r) left out
    assert run.histories["fold1_inner0_loss_main"] == [0.9, 0.5]
    assert run.histories["fold1_inner0_loss_aux"] == [0.3, 0.3]
    assert run.histories["fold0_inner0_val_mean_r"] == [0.1, 0.3]
    assert run.histories["fold0_final_loss_main"] == [0.8, 0.4]
    assert set(run.histories) == {
        f"fold{k}_{name}"
        for k in (0, 1)
        for name in (
            "inner0_loss_main",
            "inner0_loss_aux",
            "inner0_val_mean_r",
            "final_loss_main",
            "final_loss_aux",
        )
    }
    assert run.models == {"fold0": models[0], "fold1": models[1]}
    # the run spans its folds' training; the node that trained each fold is named
    assert (run.start_time, run.end_time) == (1000.0, 1150.0)
    assert run.metrics["train_seconds"] == 100.0 and run.metrics["fold1_train_seconds"] == 50.0
    assert run.tags["brstnet.fold1_node"] == "m_fold1.train_model"
    assert run.images["epoch_curves.png"].size[0] > 500


def test_a_model_without_auxiliary_head_logs_no_auxiliary_curve() -> None:
    model = _model(0, ["A"])
    model.config["model"]["aux_weight"] = 0.0
    history = _history().assign(loss_aux=0.0)
    run = build_tracked_run(
        PER_GENE,
        METRICS,
        "hist",
        "maps",
        FS,
        variant="m_noaux",
        kind="model",
        histories=[history],
        models=[model],
    )
    assert not [k for k in run.histories if "aux" in k]
    assert run.histories["fold0_final_loss_main"] == [0.8, 0.4]


def test_histories_and_models_must_pair_up() -> None:
    with pytest.raises(ValueError):
        build_tracked_run(
            PER_GENE,
            METRICS,
            "hist",
            "maps",
            FS,
            variant="m",
            kind="model",
            histories=[_history()],
            models=[],
        )
