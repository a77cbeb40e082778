"""feature_selection on the real her2st copy (B4 of patient B; C2, C3 of patient C)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from brstnet.features.panel import align_genes, select_panel

pytestmark = pytest.mark.real_data


def test_splits_are_leave_one_patient_out(real_run: Path) -> None:
    splits = pd.read_csv(real_run / "data/05_model_input/splits.csv")
    outer = splits[splits["inner_fold"] == -1]
    tests = outer[outer["role"] == "test"].groupby("fold")["patient"].unique()
    assert [sorted(t) for t in tests] == [["B"], ["C"]]
    # fold 0 trains on C2 + C3 (one patient): its inner split is by section
    inner = splits[(splits["fold"] == 0) & (splits["inner_fold"] == 0)]
    assert sorted(inner["section"]) == ["C2", "C3"] and sorted(inner["role"]) == ["train", "val"]


def test_fold_panels_use_training_patients_only(real_run: Path) -> None:
    panels = pd.read_parquet(real_run / "data/05_model_input/gene_panels.parquet")
    sections = {
        s: ad.read_h5ad(real_run / f"data/03_primary/sections/{s}.h5ad") for s in ("B4", "C2", "C3")
    }
    main = {
        f: set(panels.loc[(panels["fold"] == f) & (panels["set"] == "main"), "gene"])
        for f in (-1, 0, 1)
    }
    # recomputed by hand from the training sections alone
    for fold, train in ((0, ["C2", "C3"]), (1, ["B4"])):
        expected = select_panel(
            align_genes([sections[s] for s in train]), n_genes=250, min_detection=0.10
        )
        assert main[fold] == set(expected.loc[expected["set"] == "main", "gene"])
        assert {"ERBB2", "GRB7"} <= main[fold], f"fold {fold}"
    # the all-patient panel differs: B4 alone (110 spots) picks a visibly different panel
    report = pd.read_csv(real_run / "data/08_reporting/panel_leakage.csv").set_index("fold")
    assert report.loc[1, "main_genes_not_in_all_patient_panel"] == len(main[1] - main[-1]) > 20
    assert report.loc[0, "main_genes_not_in_all_patient_panel"] == len(main[0] - main[-1])
    assert main[0] != main[-1] or main[1] != main[-1]


def test_targets_use_training_statistics(real_run: Path) -> None:
    stats = pd.read_parquet(real_run / "data/05_model_input/target_statistics.parquet")
    for fold in (0, 1):
        data = ad.read_h5ad(real_run / f"data/05_model_input/folds/fold_{fold}.h5ad")
        train = data.obs["role"].to_numpy() == "train"
        assert set(data.obs.loc[train, "patient"]) == {"C" if fold == 0 else "B"}
        # z-scores: mean 0 and std 1 over training spots, not over test spots
        np.testing.assert_allclose(data.X[train].mean(axis=0), 0, atol=1e-4)
        sd = data.X[train].std(axis=0)
        np.testing.assert_allclose(
            sd[stats.query("fold == @fold and set == 'main'")["std"].to_numpy() != 1], 1, atol=1e-3
        )
        assert abs(data.X[~train].mean()) > 1e-3
        # the saved statistics reproduce the targets from raw counts
        fold_stats = (
            stats[(stats["fold"] == fold) & (stats["set"] == "main")]
            .set_index("gene")
            .loc[data.var_names]
        )
        # library targets (the default): reads per 10,000 of the spot's reads over all genes
        assert data.uns["transform"] == "library"
        total = data.obs["total_counts"].to_numpy(float)[:, None]
        library = np.log1p(data.layers["counts"] / total * 1e4)
        expected = (library - fold_stats["mean"].to_numpy()) / fold_stats["std"].to_numpy()
        # the depth head's targets: log read depth z-scored with the training spots' figures
        depth = np.log(data.obs["total_counts"].to_numpy(float))
        assert data.uns["depth_mean"] == pytest.approx(depth[train].mean())
        np.testing.assert_allclose(
            data.obs["depth_target"], (depth - depth[train].mean()) / depth[train].std(), atol=1e-5
        )
        np.testing.assert_allclose(data.X, expected, atol=1e-4)
        assert (
            data.obsm["aux"].shape == (data.n_obs, len(data.uns["aux_genes"]))
            and len(data.uns["aux_genes"]) > 1000
        )
        assert (data.obs["patch_row"] >= 0).all()
