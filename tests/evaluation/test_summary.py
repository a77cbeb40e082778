"""A variant's per-gene table and metrics, the summary across variants and the map
choice, on hand-made predictions (two patients, 2-3 genes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brstnet.evaluation.held_out import on_genes, stack_folds, union_genes
from brstnet.evaluation.map_choice import choose_maps
from brstnet.evaluation.summary import SUMMARY_COLUMNS, evaluate_predictions, summary_table
from tests.evaluation.folds import predictions

X = np.array([1.0, 2.0, 3.0, 4.0])


def test_perfect_prediction_has_r_one_and_constant_prediction_nan() -> None:
    observed = np.c_[X, X]
    fold_a = predictions(observed, np.c_[2 * X + 1, np.full(4, 0.5)], ["GOOD", "FLAT"], "AAAA")
    fold_b = predictions(observed, np.c_[X, np.full(4, -1.0)], ["GOOD", "FLAT"], "BBBB")
    table, metrics = evaluate_predictions([fold_a, fold_b], alpha=0.1)

    assert list(table["gene"]) == ["GOOD", "FLAT"]
    good, flat = table.iloc[0], table.iloc[1]
    assert good["r_A"] == pytest.approx(1.0) and good["r_B"] == pytest.approx(1.0)
    assert good["median_r"] == pytest.approx(1.0)
    assert good["mae"] == pytest.approx((2 + 3 + 4 + 5) / 8)  # A off by X + 1, B exact
    assert np.isnan(flat["r_A"]) and np.isnan(flat["median_r"]) and flat["n_patients"] == 0
    assert metrics["variant"] == "v"
    assert metrics["n_genes"] == 2 and metrics["genes_nan_r"] == 1
    assert metrics["genes_positive"] == 1 and metrics["genes_r_gt_0_5"] == 1
    assert metrics["median_r"] == pytest.approx(1.0)
    assert metrics["test_spots"] == 8 and metrics["test_patients"] == 2
    assert metrics["genes_in_every_fold"] == 2
    assert metrics["significant_genes"] == 0  # two patients never pass a sign test


def test_folds_with_different_panels_evaluate_the_union() -> None:
    fold_a = predictions(np.c_[X, X], np.c_[X, -X], ["G1", "G2"], "AAAA")  # holds out A
    fold_b = predictions(np.c_[X, X], np.c_[X, X], ["G2", "G3"], "BBBB")  # holds out B
    genes = union_genes([fold_a, fold_b])
    assert genes == ["G1", "G2", "G3"]

    observed, predicted, patients = stack_folds([fold_a, fold_b], genes)
    assert observed.shape == predicted.shape == (8, 3) and list(patients) == list("AAAABBBB")
    assert np.isnan(predicted[:4, 2]).all() and np.isnan(predicted[4:, 0]).all()
    np.testing.assert_array_equal(predicted[:4, 1], -X)  # fold A's G2, its second column
    np.testing.assert_array_equal(predicted[4:, 1], X)  # fold B's G2, its first column

    table, metrics = evaluate_predictions([fold_a, fold_b], alpha=0.1)
    table = table.set_index("gene")
    assert table["n_predicted"].tolist() == [1, 2, 1]
    assert table.loc["G1", "r_A"] == pytest.approx(1.0) and np.isnan(table.loc["G1", "r_B"])
    assert np.isnan(table.loc["G3", "r_A"]) and table.loc["G3", "r_B"] == pytest.approx(1.0)
    assert table.loc["G2", "r_A"] == pytest.approx(-1.0)
    assert table.loc["G2", "r_B"] == pytest.approx(1.0)
    assert table.loc["G2", "median_r"] == pytest.approx(0.0)  # median of (-1, 1)
    assert metrics["n_genes"] == 3 and metrics["genes_in_every_fold"] == 1
    assert metrics["genes_nan_r"] == 0 and metrics["genes_positive"] == 2


def test_on_genes_fills_missing_genes_with_nan() -> None:
    values = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = on_genes(values, ["B", "A"], ["A", "C", "B"])
    np.testing.assert_array_equal(out[:, 0], [2.0, 4.0])
    assert np.isnan(out[:, 1]).all()
    np.testing.assert_array_equal(out[:, 2], [1.0, 3.0])


def test_summary_table_orders_by_acc_with_nan_last() -> None:
    base = dict.fromkeys(SUMMARY_COLUMNS, 0)
    metrics = [
        {**base, "variant": "flat", "aCC": float("nan"), "extra": 1},
        {**base, "variant": "good", "aCC": 0.6},
        {**base, "variant": "fair", "aCC": 0.2},
    ]
    summary = summary_table(metrics)
    assert list(summary.columns) == list(SUMMARY_COLUMNS)  # extra keys dropped
    assert summary["variant"].tolist() == ["good", "fair", "flat"]


def test_choose_maps_picks_the_largest_section_and_genes_of_its_fold() -> None:
    fold_a = predictions(np.c_[X, X], np.c_[X, X], ["G1", "G2"], "AAAA", sections=list("1122"))
    fold_b = predictions(
        np.c_[X, X, X], np.c_[X, X, X], ["G2", "G3", "ERBB2"], "BBBB", sections=list("3334")
    )
    per_gene = pd.DataFrame(
        {"gene": ["G1", "G2", "G3", "ERBB2"], "median_r": [0.9, 0.5, np.nan, 0.1]}
    )
    choice = choose_maps(per_gene, [fold_a, fold_b], n_best_genes=1, map_genes=["ERBB2", "G1"])
    # section 3 has 3 spots; G1 (best) is not in fold B's panel, G3 has no finite r
    assert (choice.section, choice.fold) == ("3", 1)
    assert choice.genes == ["G2", "ERBB2"]
    none = choose_maps(per_gene, [fold_a, fold_b], n_best_genes=0, map_genes=["G1"])
    assert none.genes == ["G2"]  # nothing chosen: the panel's first gene
