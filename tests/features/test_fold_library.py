"""Per-fold panels, target statistics and model inputs on a hand-checkable tiny data set.

Patients A (sections A1, A2), B (B1) and C (C1), two spots a section, four genes:
G_HI (~10 reads), G_MID (~5), G_LOW (~1) everywhere and C_ONLY, read only in C1
(40 and 60 reads; the other sections do not list it). Leave one patient out gives
fold 0 = test A, fold 1 = test B, fold 2 = test C.
"""

from __future__ import annotations

import ast
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import brstnet.features
from brstnet.features.model_inputs import build_fold_input, build_model_inputs
from brstnet.features.panel import fold_panels, panel_genes
from brstnet.features.splits import fold_sections, make_splits
from brstnet.features.targets import target_statistics

COUNTS = {  # section -> gene -> counts of its two spots
    "A1": {"G_HI": [8, 12], "G_MID": [4, 6], "G_LOW": [1, 0]},
    "A2": {"G_HI": [10, 10], "G_MID": [5, 3], "G_LOW": [0, 2]},
    "B1": {"G_HI": [9, 11], "G_MID": [6, 4], "G_LOW": [1, 1]},
    "C1": {"G_HI": [7, 13], "G_MID": [5, 5], "G_LOW": [0, 3], "C_ONLY": [40, 60]},
}
PANEL = {"n_genes": 2, "min_detection": 0.2, "aux_max_genes": None, "method": "top_mean"}


def _section(name: str) -> ad.AnnData:
    frame = pd.DataFrame(COUNTS[name])
    frame.index = [f"{name}_{i}" for i in range(len(frame))]
    adata = ad.AnnData(
        sp.csr_matrix(frame.to_numpy(np.int32)),
        obs=pd.DataFrame(index=frame.index),
        var=pd.DataFrame(index=frame.columns),
    )
    adata.obs["section"] = name
    adata.obs["patient"] = name[0]
    adata.obs["total_counts"] = frame.sum(axis=1).to_numpy()
    adata.obsm["spatial"] = np.arange(2 * len(frame), dtype=float).reshape(-1, 2)
    adata.uns["patient"] = name[0]
    return adata


@pytest.fixture
def data() -> tuple[dict[str, ad.AnnData], pd.DataFrame]:
    sections = {name: _section(name) for name in sorted(COUNTS)}
    table = pd.DataFrame([{"dataset": "her2st", "patient": s[0], "section": s} for s in sections])
    return sections, make_splits(table)


def _counts(sections: list[str], gene: str) -> np.ndarray:
    """Counts of ``gene`` over the spots of ``sections`` in order (0 where unlisted)."""
    return np.concatenate([COUNTS[s].get(gene, [0, 0]) for s in sections]).astype(np.float64)


def test_fold_sections_and_panel_genes(data) -> None:
    sections, splits = data
    assert fold_sections(splits, 0, "test") == ["A1", "A2"]
    assert fold_sections(splits, 0, "train") == ["B1", "C1"]
    assert fold_sections(splits, 2, "train") == ["A1", "A2", "B1"]
    panels, _ = fold_panels(sections, splits, **PANEL)
    assert panel_genes(panels, 2, "main") == ["G_HI", "G_MID"]
    assert panel_genes(panels, 2, "aux") == ["G_LOW"]
    assert panel_genes(panels, 7, "main") == []


def test_panels_use_training_patients_only(data) -> None:
    sections, splits = data
    panels, report = fold_panels(sections, splits, **PANEL)
    assert list(panels.columns) == ["fold", "gene", "set", "rank", "mean_count", "detection"]
    assert panels["fold"].unique().tolist() == [0, 1, 2, -1]
    # all patients: C_ONLY has mean 100 / 8 = 12.5 > G_HI's 10 and detection 2 / 8 >= 0.2
    assert panel_genes(panels, -1, "main") == ["C_ONLY", "G_HI"]
    assert panel_genes(panels, -1, "aux") == ["G_MID", "G_LOW"]
    # fold 2 tests on C: the gene read only in C never enters its panel
    assert "C_ONLY" not in set(panels.loc[panels["fold"] == 2, "gene"])
    assert panel_genes(panels, 2, "main") == ["G_HI", "G_MID"]
    # folds 0 and 1 train on C: C_ONLY leads (mean 100 / 4 and 100 / 6)
    assert panel_genes(panels, 0, "main") == panel_genes(panels, 1, "main") == ["C_ONLY", "G_HI"]
    row = panels[(panels["fold"] == 0) & (panels["gene"] == "C_ONLY")].iloc[0]
    assert row["mean_count"] == pytest.approx(25.0) and row["detection"] == pytest.approx(0.5)
    hi = panels[(panels["fold"] == 2) & (panels["gene"] == "G_HI")].iloc[0]
    assert hi["mean_count"] == pytest.approx(60 / 6) and hi["detection"] == pytest.approx(1.0)

    report = report.set_index("fold")
    assert report["test_patients"].tolist() == ["A", "B", "C"]
    assert report["training_spots"].tolist() == [4, 6, 6]
    assert report["main_genes"].tolist() == [2, 2, 2]
    assert report["aux_genes"].tolist() == [2, 2, 1]
    # only fold 2's main panel differs from the all-patient one: G_MID in, C_ONLY out
    assert report["main_genes_not_in_all_patient_panel"].tolist() == [0, 0, 1]
    assert report.loc[2, "examples_only_in_fold_panel"] == "G_MID"
    assert report.loc[2, "examples_only_in_all_patient_panel"] == "C_ONLY"
    assert report.loc[0, "examples_only_in_fold_panel"] == ""


def test_statistics_are_those_of_transformed_training_values(data) -> None:
    sections, splits = data
    panels, _ = fold_panels(sections, splits, **PANEL)
    stats = target_statistics(sections, splits, panels, transform="log1p", zscore=True)
    assert list(stats.columns) == ["fold", "set", "gene", "mean", "std", "transform", "zscore"]
    assert len(stats) == 4 + 4 + 3  # per fold: 2 main + its aux genes
    for fold in (0, 1, 2):
        train = fold_sections(splits, fold, "train")
        for which in ("main", "aux"):
            part = stats[(stats["fold"] == fold) & (stats["set"] == which)]
            assert part["gene"].tolist() == panel_genes(panels, fold, which)
            for gene, mean, std in zip(part["gene"], part["mean"], part["std"], strict=True):
                values = np.log1p(_counts(train, gene))
                assert mean == pytest.approx(values.mean(), rel=1e-6)
                assert std == pytest.approx(values.std(), rel=1e-6)
    g_low = stats[(stats["fold"] == 2) & (stats["gene"] == "G_LOW")].iloc[0]
    expected = np.log1p([1, 0, 0, 2, 1, 1])  # A1, A2, B1: C1's 3 reads stay out
    assert g_low["mean"] == pytest.approx(expected.mean(), rel=1e-6)
    assert (stats["transform"] == "log1p").all() and stats["zscore"].all()

    plain = target_statistics(sections, splits, panels, transform="log1p", zscore=False)
    assert (plain["mean"] == 0.0).all() and (plain["std"] == 1.0).all()
    assert not plain["zscore"].any()


def test_model_input_targets_roles_and_patch_rows(data) -> None:
    sections, splits = data
    panels, _ = fold_panels(sections, splits, **PANEL)
    stats = target_statistics(sections, splits, panels, transform="log1p", zscore=True)
    obs_names = [f"{s}_{i}" for s in sorted(COUNTS) for i in range(2)]
    # C1_1 has no patch; A2_0 has one over the background threshold
    index = pd.DataFrame(
        {"row": [0, 1, 2, 3, 4, 5, 6], "passes_tissue": [True, True, False] + [True] * 4},
        index=obs_names[:-1],
    )
    fold_input = build_fold_input(
        sections, splits, panels, stats, index, 2, transform="log1p", zscore=True
    )
    spots = ["A1", "A2", "B1", "C1"]  # training sections, then the test section
    assert fold_input.obs_names.tolist() == obs_names
    assert fold_input.var_names.tolist() == ["G_HI", "G_MID"]
    main = stats[(stats["fold"] == 2) & (stats["set"] == "main")]
    for j, gene in enumerate(["G_HI", "G_MID"]):
        mean, std = main.iloc[j]["mean"], main.iloc[j]["std"]
        expected = (np.log1p(_counts(spots, gene)) - mean) / std
        np.testing.assert_allclose(fold_input.X[:, j], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(fold_input.layers["counts"][:, j], _counts(spots, gene))
        assert fold_input.var.loc[gene, "target_mean"] == mean
        assert fold_input.var.loc[gene, "target_std"] == std
    aux = stats[(stats["fold"] == 2) & (stats["set"] == "aux")].iloc[0]
    expected_aux = (np.log1p(_counts(spots, "G_LOW")) - aux["mean"]) / aux["std"]
    np.testing.assert_allclose(fold_input.obsm["aux"][:, 0], expected_aux, rtol=1e-5, atol=1e-6)
    assert fold_input.X.dtype == fold_input.obsm["aux"].dtype == np.float32
    # z-scored on training spots: mean 0 there
    train = fold_input.obs["role"].to_numpy() == "train"
    np.testing.assert_allclose(fold_input.X[train].mean(axis=0), 0, atol=1e-6)

    obs = fold_input.obs
    assert obs["role"].tolist() == ["train"] * 6 + ["test"] * 2
    assert obs["patient"].tolist() == ["A", "A", "A", "A", "B", "B", "C", "C"]
    assert obs["patch_row"].tolist() == [0, 1, 2, 3, 4, 5, 6, -1]
    assert obs["passes_tissue"].tolist() == [True, True, False, True, True, True, True, False]
    assert obs["total_counts"].tolist() == [13, 18, 15, 15, 16, 16, 52, 81]
    assert fold_input.obsm["spatial"].shape == (8, 2)
    assert fold_input.uns["fold"] == 2 and fold_input.uns["aux_genes"].tolist() == ["G_LOW"]
    assert fold_input.uns["transform"] == "log1p" and fold_input.uns["zscore"] is True

    every = build_model_inputs(sections, splits, panels, stats, index, transform="log1p")
    assert list(every) == ["fold_0", "fold_1", "fold_2"]
    np.testing.assert_array_equal(every["fold_2"].X, fold_input.X)
    roles = every["fold_0"].obs.groupby("section", observed=True)["role"].unique()
    assert {s: r.tolist() for s, r in roles.items()} == {
        "A1": ["test"],
        "A2": ["test"],
        "B1": ["train"],
        "C1": ["train"],
    }
    # fold 0 trains on C (B1, C1, then test A1, A2): C_ONLY leads, 0 reads outside C1
    assert every["fold_0"].var_names.tolist() == ["C_ONLY", "G_HI"]
    np.testing.assert_array_equal(
        every["fold_0"].layers["counts"][:, 0], _counts(["B1", "C1", "A1", "A2"], "C_ONLY")
    )


def test_features_never_import_kedro_mlflow_or_pipelines() -> None:
    forbidden = ("kedro", "mlflow", "brstnet.pipelines")
    for path in Path(brstnet.features.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
            else:
                continue
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
