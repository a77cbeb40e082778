"""End-to-end `training` on the real her2st copy (tiny backbone, one epoch)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.real_data


def test_per_gene_table_has_every_panel_gene_with_finite_r(real_run: Path) -> None:
    panels = pd.read_parquet(real_run / "data/05_model_input/gene_panels.parquet")
    main = panels[(panels["fold"] >= 0) & (panels["set"] == "main")]
    table = pd.read_csv(
        real_run / "data/08_reporting/evaluation/test_resnet_aux_ctx_per_gene.csv"
    ).set_index("gene")
    assert set(table.index) == set(main["gene"]) and table.index.is_unique
    assert len(main[main["fold"] == 0]) == len(main[main["fold"] == 1]) == 250
    # every gene a fold predicts and its held-out patient expresses (non-constant) has a finite r
    for fold, patient in ((0, "B"), (1, "C")):
        predictions = ad.read_h5ad(
            real_run / f"data/07_model_output/test_resnet_aux_ctx_fold{fold}_predictions.h5ad"
        )
        assert set(predictions.obs["patient"]) == {patient}
        expressed = np.asarray(predictions.layers["observed_counts"]).std(axis=0) > 0
        genes = predictions.var_names[expressed]
        assert np.isfinite(table.loc[genes, f"r_{patient}"]).all()
        assert expressed.mean() > 0.95
    summary = pd.read_csv(real_run / "data/08_reporting/evaluation_summary.csv").set_index(
        "variant"
    )
    assert set(summary.index) == {
        "test_resnet_aux_ctx",
        "baseline_mean",
        "baseline_ridge",
        "reference_read_depth",
    }
    assert summary.loc["test_resnet_aux_ctx", "test_spots"] == 110 + 182 + 177
    # gene-specific numbers: finite for a model; the read-depth reference has no partial r
    assert np.isfinite(summary.loc["test_resnet_aux_ctx", "median_partial_r"])
    assert np.isfinite(summary.loc["test_resnet_aux_ctx", "median_r_libnorm"])
    assert np.isnan(summary.loc["reference_read_depth", "median_partial_r"])
    assert (
        real_run / "data/08_reporting/evaluation/test_resnet_aux_ctx_gene_maps.png"
    ).stat().st_size > 10_000


def test_mlflow_holds_one_child_run_per_variant_under_the_kedro_run(real_run: Path) -> None:
    client = MlflowClient(f"sqlite:///{real_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("brstnet")
    runs = client.search_runs([experiment.experiment_id])
    children = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert set(children) == {
        "test_resnet_aux_ctx",
        "baseline_mean",
        "baseline_ridge",
        "reference_read_depth",
    }
    assert len(parents) == 1 and {c.data.tags["mlflow.parentRunId"] for c in children.values()} == {
        parents[0].info.run_id
    }
    assert children["test_resnet_aux_ctx"].data.metrics["genes_positive"] >= 0
    model = children["test_resnet_aux_ctx"].data.metrics
    assert {"median_partial_r", "pixel_size_4um_median_r", "jpeg_q50_median_r_kept"} <= set(model)
    assert children["reference_read_depth"].data.tags["brstnet.kind"] == "reference"


def test_robustness_recuts_the_held_out_slides_as_the_store_did(real_run: Path) -> None:
    """The held-out sections re-cut from the original slides give the store's numbers;
    every degradation is reported with the share of r it keeps."""
    robust = pd.read_csv(real_run / "data/08_reporting/robustness_summary.csv")
    assert list(robust["condition"]) == [
        "original",
        "pixel_size_2um",
        "pixel_size_4um",
        "stain_shift_0.3",
        "jpeg_q50",
    ]
    assert set(robust["variant"]) == {"test_resnet_aux_ctx"}
    robust = robust.set_index("condition")
    summary = pd.read_csv(real_run / "data/08_reporting/evaluation_summary.csv").set_index(
        "variant"
    )
    assert robust.loc["original", "median_r"] == pytest.approx(
        summary.loc["test_resnet_aux_ctx", "median_r"], abs=1e-6
    )
    assert robust.loc["original", "median_r_kept"] == 1.0
    assert np.isfinite(robust["median_r"]).all()
    assert (real_run / "data/08_reporting/robustness_summary.png").stat().st_size > 10_000
