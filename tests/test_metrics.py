"""Metric functions on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from brstnet.metrics import (
    holm,
    pearson_per_gene,
    per_gene_table,
    sign_test,
    spearman_per_gene,
    summarise,
)


def test_perfect_anti_and_partial_correlation() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    obs = np.c_[x, x, x]
    pred = np.c_[2 * x + 5, -x, np.array([1.0, 3.0, 2.0, 4.0])]
    r = pearson_per_gene(obs, pred)
    assert r[0] == pytest.approx(1.0) and r[1] == pytest.approx(-1.0)
    assert r[2] == pytest.approx(stats.pearsonr(x, [1, 3, 2, 4]).statistic)  # 0.8


def test_constant_and_nan_give_nan_not_zero() -> None:
    obs = np.array([[1.0, 5.0, 1.0, 1.0], [2.0, 5.0, 2.0, np.nan], [3.0, 5.0, 3.0, 3.0]])
    pred = np.array([[0.0, 1.0, 7.0, 1.0], [1.0, 2.0, 7.0, 2.0], [3.0, 3.0, 7.0, 3.0]])
    r = pearson_per_gene(obs, pred)
    assert np.isfinite(r[0])
    assert np.isnan(r[1])  # constant observed
    assert np.isnan(r[2])  # constant prediction (e.g. the training-mean baseline)
    assert np.isnan(r[3])  # a NaN value
    assert np.isnan(pearson_per_gene(np.ones((1, 2)), np.ones((1, 2)))).all()  # one spot


def test_spearman_is_pearson_of_ranks() -> None:
    obs = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    pred = np.array([1.0, 10.0, 100.0, 1000.0, 10000.0])  # monotone, not linear
    assert spearman_per_gene(obs, pred)[0] == pytest.approx(1.0)
    assert pearson_per_gene(obs, pred)[0] < 0.9


def test_sign_test_on_a_known_table() -> None:
    # 3 genes x 5 patients: all positive; 3 of 5 positive; 4 of 4 finite positive
    r = np.array(
        [
            [0.2, 0.1, 0.3],
            [0.4, -0.2, 0.1],
            [0.1, 0.3, np.nan],
            [0.3, -0.1, 0.2],
            [0.5, 0.2, 0.4],
        ]
    )
    positives, n, p = sign_test(r)
    assert positives.tolist() == [5, 3, 4] and n.tolist() == [5, 5, 4]
    np.testing.assert_allclose(p, [1 / 32, 16 / 32, 1 / 16])  # P(X >= k), X ~ Bin(n, 1/2)


def test_holm_step_down() -> None:
    # m = 4 finite p-values, sorted 0.01, 0.03, 0.04, 0.2 against 0.1/4, 0.1/3, 0.1/2, 0.1/1:
    # 0.01 <= 0.025, 0.03 <= 0.0333, 0.04 <= 0.05 rejected; 0.2 > 0.1 stops
    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan])
    np.testing.assert_array_equal(holm(p, alpha=0.1), [True, True, True, False, False])
    # at alpha 0.025: 0.01 <= 0.0125 rejected, then 0.03 > 0.025 stops
    np.testing.assert_array_equal(holm(np.array([0.03, 0.01]), alpha=0.025), [False, True])
    # step-down stops at the first failure even if a later bound would pass
    # 0.03 > 0.05/2 stops, although 0.035 <= 0.05/1
    np.testing.assert_array_equal(holm(np.array([0.03, 0.035]), alpha=0.05), [False, False])


def test_per_gene_table_and_summary() -> None:
    rng = np.random.default_rng(0)
    n = 40
    patients = np.repeat(["P1", "P2"], n // 2)
    obs = rng.normal(size=(n, 3))
    pred = np.c_[obs[:, 0], -obs[:, 1], np.full(n, 0.5)]  # perfect, anti, constant
    pred[patients == "P2", 0] = np.nan  # gene 0 not in P2's fold panel
    table = per_gene_table(obs, pred, patients, ["GOOD", "ANTI", "FLAT"])
    assert table.loc["GOOD", "r_P1"] == pytest.approx(1.0) and np.isnan(table.loc["GOOD", "r_P2"])
    assert (
        table.loc["GOOD", "median_r"] == pytest.approx(1.0)
        and table.loc["GOOD", "n_predicted"] == 1
    )
    assert (
        table.loc["ANTI", "median_r"] == pytest.approx(-1.0)
        and table.loc["ANTI", "n_positive"] == 0
    )
    assert np.isnan(table.loc["FLAT", "median_r"]) and table.loc["FLAT", "n_patients"] == 0
    assert table.loc["GOOD", "pooled_r"] == pytest.approx(
        1.0
    )  # over P1's spots, where it is predicted
    assert table.loc["FLAT", "mae"] == pytest.approx(np.abs(obs[:, 2] - 0.5).mean())
    summary = summarise(table)
    assert summary["n_genes"] == 3 and summary["genes_nan_r"] == 1
    assert summary["genes_positive"] == 1 and summary["genes_r_gt_0_5"] == 1
    assert summary["genes_in_every_fold"] == 2
    assert summary["median_r"] == pytest.approx(0.0)  # median of (1, -1)
    assert summary["significant_genes"] == 0  # one or two patients can never pass a sign test
