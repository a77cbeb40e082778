"""What is gene-specific in r: partial r given read depth, r on library-normalised counts
and the read-depth reference, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from brstnet.evaluation.held_out import LIBNORM_TARGET
from brstnet.evaluation.summary import evaluate_predictions
from brstnet.metrics import partial_pearson_per_gene, pearson_per_gene, per_gene_table
from tests.evaluation.folds import predictions


def _partial_by_formula(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    r = lambda a, b: np.corrcoef(a, b)[0, 1]  # noqa: E731
    rxy, rxz, ryz = r(x, y), r(x, z), r(y, z)
    return (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))


def test_partial_r_is_the_textbook_first_order_partial_correlation() -> None:
    rng = np.random.default_rng(0)
    z, g = rng.normal(size=300), rng.normal(size=300)
    observed = np.c_[2 * z + g, z + rng.normal(size=300)]
    predicted = np.c_[z + 0.5 * g + rng.normal(size=300), 0.2 * z + rng.normal(size=300)]
    got = partial_pearson_per_gene(observed, predicted, z)
    for j in range(2):
        assert got[j] == pytest.approx(_partial_by_formula(observed[:, j], predicted[:, j], z))
    # depth explains much of gene 0's plain r; its partial r is what g carries
    assert pearson_per_gene(observed, predicted)[0] > got[0] > 0.2


def test_a_prediction_that_is_read_depth_has_no_partial_r() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=50)
    observed = (3 * z + rng.normal(size=50))[:, None]
    r = pearson_per_gene(observed, (2 * z - 1)[:, None])[0]
    assert r > 0.9  # high r from depth alone ...
    assert np.isnan(partial_pearson_per_gene(observed, (2 * z - 1)[:, None], z)[0])  # ... none left
    assert np.isnan(partial_pearson_per_gene(observed, observed, np.ones(50))).all()  # constant z


def test_per_gene_table_adds_partial_and_libnorm_columns_per_patient() -> None:
    rng = np.random.default_rng(2)
    n = 40
    patients = np.array(["A"] * 20 + ["B"] * 20)
    depth = rng.normal(size=n)
    observed = np.c_[depth + rng.normal(size=n), rng.normal(size=n)]
    predicted = np.c_[depth, observed[:, 1] + 0.1 * rng.normal(size=n)]
    normalised = observed - depth[:, None]
    table = per_gene_table(
        observed,
        predicted,
        patients,
        ["G1", "G2"],
        log_depth=depth,
        observed_normalised=normalised,
    )
    a = patients == "A"
    assert table.loc["G2", "partial_r_A"] == pytest.approx(
        partial_pearson_per_gene(observed[a], predicted[a], depth[a])[1]
    )
    assert table.loc["G1", "r_libnorm_B"] == pytest.approx(
        pearson_per_gene(normalised[~a], predicted[~a])[0]
    )
    assert np.isnan(table.loc["G1", "median_partial_r"])  # G1 predicted by depth alone
    assert table.loc["G2", "median_partial_r"] > 0.9


def test_evaluation_reports_depth_free_numbers_from_counts_and_library_size() -> None:
    """A model that predicts only read depth scores high r, no partial r and a low r on
    library-normalised counts; one that predicts the gene's share keeps them."""
    rng = np.random.default_rng(3)
    n, genes = 60, ["G1", "G2"]
    total = rng.integers(1_000, 20_000, n).astype(float)
    share = rng.uniform(0.001, 0.01, n)  # G1's share of the reads varies: gene-specific signal
    counts = np.c_[np.round(total * share), np.round(total * 0.005)]
    observed = np.log1p(counts)
    patients = ["A"] * 30 + ["B"] * 30

    def preds(predicted: np.ndarray, variant: str):
        out = predictions(observed, predicted, genes, patients, variant=variant)
        out.obs["total_counts"] = total.astype(np.int64)
        out.layers["observed_counts"] = counts
        return out

    depth_only = np.tile(np.log(total)[:, None], (1, 2))
    gene_share = np.c_[np.log(share), np.log(total)]
    _, by_depth = evaluate_predictions([preds(depth_only, "depth")], alpha=0.1)
    table, by_share = evaluate_predictions([preds(gene_share, "share")], alpha=0.1)
    assert np.isnan(by_depth["median_partial_r"])  # every gene: nothing left beyond depth
    assert by_share["median_partial_r"] > 0.8
    libnorm = np.log1p(counts / total[:, None] * LIBNORM_TARGET)
    a = np.arange(n) < 30
    assert table.set_index("gene").loc["G1", "r_libnorm_A"] == pytest.approx(
        pearson_per_gene(libnorm[a, :1], gene_share[a, :1])[0], abs=1e-6
    )
    assert by_share["median_r_libnorm"] > by_depth["median_r_libnorm"]


def test_the_fields_table_reads_a_library_model_with_its_depth_head() -> None:
    """A model trained on library-normalised targets predicts composition; its depth head
    the read depth. The table reads the composition against library-normalised counts
    (the field's headline, mean over patients) and the two together against log1p counts
    (BrST-Net's statistics), and scores the depth head apart."""
    rng = np.random.default_rng(4)
    n, genes = 80, ["G1", "G2", "G3"]
    total = rng.integers(1_000, 20_000, n).astype(float)
    share = rng.uniform(0.001, 0.01, (n, 3))
    counts = np.round(total[:, None] * share)
    library = np.log1p(counts / total[:, None] * LIBNORM_TARGET)
    patients = np.array(["A"] * 40 + ["B"] * 40)
    noisy = library + rng.normal(0, 0.3, library.shape)  # the composition, with noise
    predicted_depth = np.log(total) + rng.normal(0, 0.2, n)
    out = predictions(library, noisy, genes, list(patients), variant="m")
    out.obs["total_counts"] = total.astype(np.int64)
    out.obs["predicted_log_depth"] = predicted_depth
    out.layers["observed_counts"] = counts
    out.layers["predicted_library"] = noisy.astype(np.float32)
    out.layers["predicted_log1p"] = np.log1p(
        np.expm1(noisy) * np.exp(predicted_depth)[:, None] / LIBNORM_TARGET
    ).astype(np.float32)
    out.uns["transform"] = "library"
    table, metrics = evaluate_predictions([out], alpha=0.1)
    table = table.set_index("gene")

    a = patients == "A"
    per_patient = {
        p: pearson_per_gene(library[patients == p], noisy[patients == p]) for p in ("A", "B")
    }
    # the field's headline: r per held-out patient, averaged over genes, then patients
    assert metrics["mean_r_libnorm"] == pytest.approx(
        np.mean([per_patient["A"].mean(), per_patient["B"].mean()])
    )
    log1p = np.log1p(counts)
    assert table.loc["G2", "r_log1p_A"] == pytest.approx(
        pearson_per_gene(log1p[a], out.layers["predicted_log1p"][a])[1], abs=1e-6
    )
    assert metrics["median_r_log1p"] == pytest.approx(np.median(table["median_r_log1p"].to_numpy()))
    assert metrics["genes_positive_log1p"] == 3 and metrics["targets"] == "library"
    assert metrics["genes_partial_r_gt_0"] == int((table["median_partial_r"] > 0).sum())
    depth_r = np.mean([np.corrcoef(np.log(total)[m], predicted_depth[m])[0, 1] for m in (a, ~a)])
    assert metrics["depth_r"] == pytest.approx(depth_r) and depth_r > 0.9
    # composition x depth gives log1p counts that follow depth: r on log1p exceeds r on
    # library-normalised values, which only the composition explains
    assert metrics["median_r_log1p"] > metrics["median_r_libnorm"] > 0.5
