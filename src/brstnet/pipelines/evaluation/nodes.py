"""Nodes of the evaluation pipeline: thin adapters over :mod:`brstnet.evaluation`.

Each node parses its parameters, loads its fold and calls one library function. The
library modules behind them import torch, scikit-learn and matplotlib, so they are lazy
modules (loaded when a node first runs): listing the pipelines stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# names of the signatures, resolvable at run time (see nodes_common.lazy_module)
import anndata as ad
import pandas as pd
from PIL.Image import Image

from brstnet.config import DataProcessingParams, EvaluationParams, FeatureSelectionParams
from brstnet.evaluation.tracking import TrackedRun
from brstnet.st.patches import PatchStore

from ..nodes_common import lazy_module, load_fold, parse
from ..variants import variant_grid

if TYPE_CHECKING:
    import matplotlib.figure as mpl_figure

    import brstnet.evaluation.baselines as baselines
    import brstnet.evaluation.plots as plots
    import brstnet.evaluation.predictions as predicting
    import brstnet.evaluation.robustness as robustness
    import brstnet.evaluation.summary as summaries
    import brstnet.evaluation.tracking as tracking
    import brstnet.training.bundle as training_bundle
else:
    mpl_figure = lazy_module("matplotlib.figure")
    training_bundle = lazy_module("brstnet.training.bundle")
    baselines = lazy_module("brstnet.evaluation.baselines")
    plots = lazy_module("brstnet.evaluation.plots")
    predicting = lazy_module("brstnet.evaluation.predictions")
    robustness = lazy_module("brstnet.evaluation.robustness")
    summaries = lazy_module("brstnet.evaluation.summary")
    tracking = lazy_module("brstnet.evaluation.tracking")


def predict_held_out(
    model: training_bundle.ModelBundle,
    model_inputs: dict,
    patch_store: PatchStore,
    params: dict[str, Any],
) -> ad.AnnData:
    """Predict every held-out spot of the model's fold (``<variant>_fold<k>.predictions``).

    Raises:
        ValueError: the model was trained on another gene panel than the fold's.
    """
    cfg = parse(EvaluationParams, params)
    fold_input = load_fold(model_inputs, int(model.config["fold"]))
    return predicting.predict_fold(
        model,
        fold_input,
        patch_store.patches,
        batch_size=cfg.batch_size,
        tta=cfg.tta,
        device=cfg.device,
    )


def predict_baselines(
    model_inputs: dict, patch_store: PatchStore, *, fold: int
) -> tuple[ad.AnnData, ad.AnnData, ad.AnnData]:
    """The training-mean and ridge-on-image-features baselines and the read-depth
    reference for one fold."""

    return baselines.baseline_predictions(
        load_fold(model_inputs, fold), patch_store.patches, fold=fold
    )


def cut_degraded_patches(
    model_inputs: dict,
    sections: dict,
    patch_store: PatchStore,
    params: dict[str, Any],
    *,
    fold: int,
) -> dict:
    """The fold's held-out spots re-cut from degraded copies of their slides
    (``robustness_patches_fold<k>``; see :mod:`brstnet.evaluation.robustness`)."""

    cfg = parse(EvaluationParams, params)
    return robustness.degraded_patches(
        load_fold(model_inputs, fold), sections, patch_store.geometry, cfg.robustness.conditions()
    )


def evaluate_robustness(
    params: dict[str, Any], model_inputs: dict, *fold_items: Any
) -> tuple[pd.DataFrame, mpl_figure.Figure]:
    """A variant's r and partial r under each degradation (``<variant>.robustness``) and its
    plot. ``fold_items`` are the variant's model per fold, then each fold's degraded patches."""

    cfg = parse(EvaluationParams, params)
    n = len(fold_items) // 2
    bundles, degraded = fold_items[:n], fold_items[n:]
    table = robustness.evaluate_robustness(
        bundles,
        [load_fold(model_inputs, int(b.config["fold"])) for b in bundles],
        degraded,
        batch_size=cfg.batch_size,
        device=cfg.device,
        alpha=cfg.alpha,
    )
    return table, plots.robustness_plot({str(bundles[0].config["variant"]): table})


def evaluate_variant(
    params: dict[str, Any], *predictions: ad.AnnData
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-gene table and headline metrics over all held-out patients of a variant.

    Returns:
        ``<variant>.per_gene`` (one row per panel gene) and ``<variant>.metrics``.
    """
    cfg = parse(EvaluationParams, params)
    return summaries.evaluate_predictions(predictions, alpha=cfg.alpha)


def plot_variant(
    per_gene: pd.DataFrame, sections: dict, params: dict[str, Any], *predictions: ad.AnnData
) -> tuple[Image, Image]:
    """The per-gene r histogram and gene maps on the H&E of the largest held-out section (PNG images)."""
    cfg = parse(EvaluationParams, params)
    histogram, maps = plots.variant_figures(
        per_gene,
        predictions,
        sections,
        n_best_genes=cfg.n_best_genes,
        map_genes=cfg.map_genes,
    )
    return plots.to_image(histogram), plots.to_image(maps)


def track_variant(
    per_gene: pd.DataFrame,
    metrics: dict,
    histogram: Image,
    maps: Image,
    feature_selection: dict[str, Any],
    *fold_items: Any,
    variant: str,
    kind: str,
    robustness: pd.DataFrame | None = None,
) -> TrackedRun:
    """Everything one MLflow run of the variant shows (``<variant>.mlflow_run``).

    ``fold_items`` are, for a trained model, its training history and model per fold
    (history_0, model_0, history_1, model_1, ...); none for a baseline.
    """
    return tracking.build_tracked_run(
        per_gene,
        metrics,
        histogram,
        maps,
        parse(FeatureSelectionParams, feature_selection),
        variant=variant,
        kind=kind,
        histories=fold_items[0::2],
        models=fold_items[1::2],
        robustness=robustness,
    )


def track_model(
    per_gene: pd.DataFrame,
    metrics: dict,
    histogram: Image,
    maps: Image,
    feature_selection: dict[str, Any],
    robustness: pd.DataFrame,
    *fold_items: Any,
    variant: str,
) -> TrackedRun:
    """A trained variant's MLflow run (``<variant>.mlflow_run``): :func:`track_variant`
    with its robustness table."""
    return track_variant(
        per_gene,
        metrics,
        histogram,
        maps,
        feature_selection,
        *fold_items,
        variant=variant,
        kind="model",
        robustness=robustness,
    )


def summarise_robustness(**tables: pd.DataFrame) -> tuple[pd.DataFrame, mpl_figure.Figure]:
    """Every trained variant's robustness in one table (``robustness_summary``) and plot."""
    summary = pd.concat(
        [t.assign(variant=v) for v, t in tables.items() if len(t)] or [pd.DataFrame()],
        ignore_index=True,
    )
    if len(summary):
        summary = summary[["variant", *[c for c in summary.columns if c != "variant"]]]
    return summary, plots.robustness_plot(tables)


def summarise_variants(*metrics: dict) -> tuple[pd.DataFrame, mpl_figure.Figure]:
    """One row per variant and baseline (``evaluation_summary``) and its bar plot."""
    summary = summaries.summary_table(metrics)
    return summary, plots.summary_plot(summary)


def headline_run(
    summary: pd.DataFrame,
    data_processing: dict[str, Any],
    feature_selection: dict[str, Any],
    model_training: dict[str, Any],
) -> TrackedRun:
    """The best trained variant's headline for the ``kedro run``'s own MLflow run
    (``best_variant_run``), from ``evaluation_summary`` and the run's variant grid."""
    variants, _ = variant_grid(
        {
            "data_processing": data_processing,
            "feature_selection": feature_selection,
            "model_training": model_training,
        }
    )
    patches = parse(DataProcessingParams, data_processing).patches
    return tracking.build_headline(
        summary,
        {v.name: (v.backbone, v.aux_weight) for v in variants},
        patch_size_px=patches.size_px,
        window_um=patches.window_um,
    )
