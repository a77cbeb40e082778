"""A metric registered once is in every place a variant's figures go: the evaluation
summary, the MLflow runs (a variant's and the kedro run's headline, in a real sqlite
store), the runs table's comparison columns and the summary plot."""

from __future__ import annotations

import json
import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brstnet.config import FeatureSelectionParams
from brstnet.datasets.mlflow_run_dataset import MlflowChildRunDataset, MlflowParentRunDataset
from brstnet.evaluation.plots import summary_plot
from brstnet.evaluation.summary import SUMMARY_COLUMNS, evaluate_predictions, summary_table
from brstnet.evaluation.tracking import HEADLINE_METRICS, build_headline, build_tracked_run
from brstnet.metrics import (
    Validation,
    compared_metrics,
    get_metric,
    pearson_per_gene,
    plotted_metrics,
    register_metric,
    summary_metrics,
    unregister_metric,
    validation_scores,
)
from brstnet.mlflow_views import COMPARISON_METRICS, COMPARISON_VIEW, SHARED_VIEW_PREFIX
from tests.evaluation.folds import predictions

FS = FeatureSelectionParams.model_validate(
    {"split": {"scheme": "kfold", "k": 2, "seed": 7}, "panel": {"n_genes": 4}}
)


def _p90(table: pd.DataFrame) -> float:
    return float(np.nanpercentile(table["median_r"].to_numpy(dtype=float), 90))


@pytest.fixture
def p90():
    """The 90th percentile of per-gene r, registered for the test only."""
    metric = register_metric(
        "r_p90",
        "90th percentile of per-gene r",
        _p90,
        compare=100,
        plot=100,
        axis="r at the 90th percentile",
    )
    yield metric
    unregister_metric(metric.name)


def _variant(name: str, seed: int):
    """One fold of held-out predictions of 4 genes over 3 patients, with read depth."""
    rng = np.random.default_rng(seed)
    n, genes = 60, ["G1", "G2", "G3", "G4"]
    total = rng.integers(1_000, 20_000, n).astype(float)
    counts = np.round(total[:, None] * rng.uniform(0.001, 0.01, (n, 4)))
    library = np.log1p(counts / total[:, None] * 1e4)
    noisy = library + rng.normal(0, 0.2 + 0.3 * seed, library.shape)
    fold = predictions(library, noisy, genes, ["A"] * 20 + ["B"] * 20 + ["C"] * 20, variant=name)
    fold.obs["total_counts"] = total.astype(np.int64)
    fold.layers["observed_counts"] = counts
    return [fold]


def test_a_registered_metric_is_in_the_summary_mlflow_comparison_and_plot(p90, store) -> None:
    client = store
    evaluated = {
        name: evaluate_predictions(_variant(name, seed), alpha=0.1)
        for name, seed in (("m", 0), ("baseline_mean", 1))
    }
    # the evaluation summary: its column after the built-in ones, with its value
    assert SUMMARY_COLUMNS[-1] == "r_p90" and HEADLINE_METRICS[-1] == "r_p90"
    summary = summary_table([m for _, m in evaluated.values()])
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    for name, (per_gene, metrics) in evaluated.items():
        r = per_gene.set_index("gene")["median_r"].to_numpy(dtype=float)
        expected = float(np.percentile(r[np.isfinite(r)], 90))
        assert metrics["r_p90"] == pytest.approx(expected)
        assert summary.set_index("variant").loc[name, "r_p90"] == pytest.approx(expected)

    # MLflow: the variant's run and the kedro run's headline, in a real store
    per_gene, metrics = evaluated["m"]
    image = Image.new("RGB", (4, 4))
    run = build_tracked_run(per_gene, metrics, image, image, FS, variant="m", kind="model")
    MlflowChildRunDataset("m").save(run)
    headline = build_headline(
        summary, {"m": ("test_resnet", 1.0)}, patch_size_px=32, window_um=150.0
    )
    MlflowParentRunDataset("training").save(headline)
    experiment = client.get_experiment_by_name("brstnet")
    logged = {
        r.info.run_name: r.data.metrics for r in client.search_runs([experiment.experiment_id])
    }
    assert logged["m"]["r_p90"] == pytest.approx(metrics["r_p90"])
    assert logged["training"]["r_p90"] == pytest.approx(metrics["r_p90"])

    # the runs table's comparison columns, last, in the view stored with the experiment
    assert COMPARISON_METRICS[-1] == "r_p90"
    view = json.loads(experiment.tags[SHARED_VIEW_PREFIX + COMPARISON_VIEW])
    metric_columns = [c for c in view["selectedColumns"] if c.startswith("metrics.")]
    assert metric_columns[-1] == "metrics.`r_p90`"
    assert len(metric_columns) == len(COMPARISON_METRICS)

    # the summary plot: a fifth panel titled by the label, its axis labelled
    fig = summary_plot(summary)
    last = fig.axes[len(plotted_metrics()) - 1]
    assert len(plotted_metrics()) == 5
    assert last.get_title() == "90th percentile of per-gene r"
    assert last.get_ylabel() == "r at the 90th percentile"
    heights = [p.get_height() for p in last.patches]
    assert heights == pytest.approx(summary["r_p90"].tolist())
    plt.close(fig)


def test_unregistering_a_metric_takes_it_out_of_every_list(p90) -> None:
    before = (tuple(SUMMARY_COLUMNS), tuple(COMPARISON_METRICS), plotted_metrics())
    removed = unregister_metric("r_p90")
    try:
        assert "r_p90" not in SUMMARY_COLUMNS and "r_p90" not in COMPARISON_METRICS
        assert "r_p90" not in HEADLINE_METRICS and removed not in plotted_metrics()
        assert len(SUMMARY_COLUMNS) == len(before[0]) - 1
    finally:
        register_metric(**{f: getattr(removed, f) for f in removed.__dataclass_fields__})
    assert (tuple(SUMMARY_COLUMNS), tuple(COMPARISON_METRICS), plotted_metrics()) == before


def test_names_are_looked_up_and_taken_once() -> None:
    assert get_metric("genes_r_gt_0_5").label == "genes with median r > 0.5"
    with pytest.raises(
        ValueError,
        match=r"unknown metric 'genes_r_gt_05' \(did you mean genes_r_gt_0_5\?\); use one of mean_r_libnorm, ",
    ):
        get_metric("genes_r_gt_05")
    with pytest.raises(ValueError, match="metric 'aCC' is already registered"):
        register_metric("aCC", "again", _p90)
    with pytest.raises(ValueError, match="a genes figure needs a compute function"):
        register_metric("no_compute", "nothing")
    with pytest.raises(ValueError, match="source 'table' is not one of"):
        register_metric("bad_source", "bad", _p90, source="table")
    assert "no_compute" not in SUMMARY_COLUMNS and "bad_source" not in SUMMARY_COLUMNS


def test_the_declared_metrics_keep_the_summary_mlflow_and_plot_order() -> None:
    """The columns of evaluation_summary, the comparison columns and the plotted panels
    as they were before the registry (their CSV, the runs table and the plot read them)."""
    assert tuple(SUMMARY_COLUMNS) == (
        "variant", "targets", "mean_r_libnorm", "median_r_libnorm", "median_partial_r",
        "genes_partial_r_gt_0", "median_r_log1p", "genes_positive_log1p",
        "genes_r_gt_0_5_log1p", "aCC_log1p", "depth_r", "n_genes", "genes_in_every_fold",
        "genes_positive", "genes_r_gt_0_5", "median_r", "mean_r", "significant_genes", "aCC",
        "aMAE", "aRMSE", "genes_nan_r", "test_spots", "test_patients",
    )  # fmt: skip
    assert tuple(HEADLINE_METRICS) == tuple(SUMMARY_COLUMNS)[2:-2]
    assert tuple(COMPARISON_METRICS) == (
        "mean_r_libnorm", "median_r_libnorm", "median_partial_r", "genes_partial_r_gt_0",
        "median_r_log1p", "genes_r_gt_0_5_log1p", "significant_genes", "aCC_log1p",
        "train_seconds",
    )  # fmt: skip
    assert [m.name for m in plotted_metrics()] == [
        "mean_r_libnorm", "median_partial_r", "median_r_log1p", "genes_r_gt_0_5_log1p",
    ]  # fmt: skip
    assert [m.name for m in compared_metrics()] == list(COMPARISON_METRICS)
    assert {m.source for m in summary_metrics()} == {"genes", "spots"}
    assert get_metric("aRMSE").ascending and not get_metric("aCC").ascending


def test_a_figure_that_is_not_registered_is_named_when_left_out(caplog) -> None:
    base = dict.fromkeys(SUMMARY_COLUMNS, 0.0)
    with caplog.at_level(logging.WARNING, logger="brstnet.evaluation.summary"):
        summary = summary_table([{**base, "variant": "v", "r_p95": 0.9}])
    assert "r_p95" not in summary.columns
    assert "r_p95 not registered metrics, left out" in caplog.text


def test_validation_scores_are_the_training_loops_figures() -> None:
    rng = np.random.default_rng(0)
    observed, predicted = rng.normal(size=(30, 5)), rng.normal(size=(30, 5))
    predicted[:, 4] = 1.0  # a constant prediction: NaN r, left out of the mean and median
    r = pearson_per_gene(observed, predicted)
    assert validation_scores(Validation(r)) == {
        "val_mean_r": pytest.approx(float(np.nanmean(r))),
        "val_median_r": pytest.approx(float(np.nanmedian(r))),
    }
    scores = validation_scores(Validation(r, partial_r=r[::-1], depth_r=0.5))
    assert list(scores) == ["val_mean_r", "val_median_r", "val_median_partial_r", "val_depth_r"]
    assert scores["val_depth_r"] == 0.5
    nan = validation_scores(Validation(np.full(3, np.nan)))
    assert np.isnan(nan["val_mean_r"]) and np.isnan(nan["val_median_r"])


def test_a_package_adds_a_metric_through_its_entry_point(tmp_path, monkeypatch) -> None:
    """A module named in the brstnet.metrics entry-point group is imported at the first
    use of the registry; the metric it registers is a summary column like a built-in."""
    from importlib.metadata import EntryPoint

    import brstnet.registry as registry

    (tmp_path / "brstnet_plugin_metrics.py").write_text(
        "import numpy as np\n"
        "from brstnet.metrics import register_metric\n"
        "register_metric('plugin_min_r', 'lowest per-gene median r',\n"
        "                lambda table: float(np.nanmin(table['median_r'])), headline=False)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    point = EntryPoint("mine", "brstnet_plugin_metrics", "brstnet.metrics")
    monkeypatch.setattr(
        registry, "entry_points", lambda group: [point] if group == "brstnet.metrics" else []
    )
    monkeypatch.setattr(registry, "_PLUGINS", {})  # loaded afresh, restored after
    try:
        assert "plugin_min_r" in [m.name for m in summary_metrics()]
        assert "plugin_min_r" in SUMMARY_COLUMNS
        table = pd.DataFrame({"median_r": [0.2, -0.1, 0.4]})
        assert get_metric("plugin_min_r").compute(table) == pytest.approx(-0.1)
    finally:
        unregister_metric("plugin_min_r")
