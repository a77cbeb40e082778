"""The training-mean and ridge baselines of one fold, on a tiny synthetic fold."""

from __future__ import annotations

import numpy as np
import pytest

from brstnet.evaluation.baselines import baseline_predictions, training_mean
from brstnet.metrics import pearson_per_gene
from tests.evaluation.folds import make_fold


def test_training_mean_repeats_the_column_means() -> None:
    train = np.array([[1.0, 10.0], [3.0, 20.0]])
    np.testing.assert_array_equal(training_mean(train, 3), [[2.0, 15.0]] * 3)
    assert training_mean(train, 0).shape == (0, 2)


@pytest.fixture(scope="module")
def baselines():
    fold_input, patches = make_fold(("G1", "G2", "G3"), n_train=10, n_test=6)
    fold_input.obs.loc["s12", "passes_tissue"] = False  # held out: predicted all the same
    return fold_input, baseline_predictions(fold_input, patches, fold=2)


def test_baseline_shapes_and_labels(baselines) -> None:
    fold_input, (mean, ridge, depth) = baselines
    for out, label in (
        (mean, "baseline_mean"),
        (ridge, "baseline_ridge"),
        (depth, "reference_read_depth"),
    ):
        assert out.shape == (5, 3)  # 6 held out, one without a patch
        assert list(out.var_names) == ["G1", "G2", "G3"]
        assert out.uns["variant"] == label and out.uns["fold"] == 2
        assert set(out.obs["role"]) == {"test"} and np.isfinite(out.X).all()
        np.testing.assert_array_equal(out.layers["observed"], fold_input.X[10:15])


def test_mean_baseline_is_the_training_mean(baselines) -> None:
    fold_input, (mean, _, _) = baselines
    expected = fold_input.X[:9].mean(axis=0)  # the tenth training spot is off the tissue
    np.testing.assert_allclose(mean.X, np.tile(expected, (5, 1)), rtol=1e-6, atol=1e-7)
    # the training targets are z-scored over all ten training spots, not these nine
    assert not np.allclose(expected, 0)
    assert np.isnan(pearson_per_gene(mean.layers["observed"], mean.X)).all()  # constant


def test_ridge_reads_each_spots_own_patch(baselines) -> None:
    # G1's counts follow the patch brightness, the store rows shuffled: the ridge on
    # image features predicts G1 only if every spot's features come from its own row
    _, (_, ridge, _) = baselines
    r = pearson_per_gene(ridge.layers["observed"][:, :1], ridge.X[:, :1])[0]
    assert r > 0.95


def test_read_depth_reference_is_each_spots_own_log_total_count(baselines) -> None:
    """Every gene 'predicted' by the test spot's log total count: r with depth, nothing else."""
    fold_input, (_, _, depth) = baselines
    log_total = np.log(fold_input.obs["total_counts"].to_numpy()[10:15].astype(float))
    for j in range(3):
        np.testing.assert_allclose(
            pearson_per_gene(depth.X[:, j], log_total)[0], 1.0, rtol=0, atol=1e-6
        )
        expected = pearson_per_gene(fold_input.X[10:15, j], log_total)[0]
        got = pearson_per_gene(depth.layers["observed"][:, j], depth.X[:, j])[0]
        assert got == pytest.approx(expected, abs=1e-6)
