"""What one variant's MLflow run holds, as plain data (the dataset does the logging)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from brstnet.metrics import MetricNames, headline_metrics, validation_metrics
from brstnet.metrics.headline import MEAN_R_LIBNORM, TRAIN_SECONDS
from brstnet.training.inner import INNER_MEDIAN_PARTIAL_R, INNER_MEDIAN_R

if TYPE_CHECKING:
    from brstnet.features.params import FeatureSelectionParams
    from brstnet.training.bundle import ModelBundle

#: The ``backbone`` parameter logged for each baseline and reference.
BASELINE_BACKBONES = {
    "baseline_mean": "training mean",
    "baseline_ridge": "ridge on image features",
    "reference_read_depth": "read depth only (test spots' log total count; not a model)",
}
#: The training-history columns logged as epoch curves, when present and not all NaN: the
#: losses and every registered validation figure (:mod:`brstnet.metrics.validation`). The
#: main-gene loss is logged apart from the auxiliary one (never their weighted sum), so
#: variants with and without the auxiliary head compare on the same quantity.
HISTORY_COLUMNS = MetricNames(
    validation_metrics, before=("loss_main", "loss_aux", "loss_depth"), after=("val_loss",)
)


@dataclass
class TrackedRun:
    """One MLflow run.

    Attributes:
        name: Run name (the variant).
        params: Flat name -> value (logged as strings).
        metrics: Flat name -> number.
        histories: Metric name -> values per step (epoch curves).
        tables: Artifact file name -> DataFrame (written as CSV).
        images: Artifact file name -> PIL image (PNG).
        models: Artifact folder -> model bundle (brstnet.training.bundle.ModelBundle).
        tags: Extra run tags.
        start_time, end_time: The run's start and end (unix seconds): for a trained
            variant, the span of its folds' training; None: when it is logged.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    histories: dict[str, list[float]] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    start_time: float | None = None
    end_time: float | None = None


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The int and float entries of ``metrics`` (not bools, not strings)."""
    return {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _model_params(config: dict[str, Any]) -> dict[str, Any]:
    """A trained model's architecture, patch geometry and training settings, as run
    parameters (from a bundle config's ``model``, ``geometry`` and ``training`` blocks)."""
    model, geometry, training = config["model"], config["geometry"], config["training"]
    return {
        "backbone": model["backbone"],
        "aux_weight": model["aux_weight"],
        "context": model.get("context", False),
        "depth_weight": model.get("depth_weight", 0.0),
        "depth_detach": model.get("depth_detach", True),
        "patch_size_px": geometry["size_px"],
        "window_um": geometry["window_um"],
        "epochs": training["epochs"],
        "final": training["final"],
        "optimizer": training["optimizer"],
        "lr": training["lr"],
        "batch_size": training["batch_size"],
        "seed": training["seed"],
        "n_aux_genes": len(config["aux_genes"]),
    }


def _curves(history: pd.DataFrame, fold: int, *, aux: bool) -> dict[str, list[float]]:
    """Epoch curves of one fold's training history, ``fold<k>_<stage>_<column>``
    (``loss_aux`` only for a model with an auxiliary head)."""
    curves = {}
    columns = [c for c in HISTORY_COLUMNS if aux or c != "loss_aux"]
    for stage, part in history.groupby("stage", sort=False):
        for column in columns:
            if column in part and part[column].notna().any():
                curves[f"fold{fold}_{stage}_{column}"] = part.sort_values("epoch")[column].tolist()
    return curves


def build_tracked_run(
    per_gene: pd.DataFrame,
    metrics: dict[str, Any],
    histogram: Any,
    maps: Any,
    feature_selection: FeatureSelectionParams,
    *,
    variant: str,
    kind: str,
    histories: Sequence[pd.DataFrame] = (),
    models: Sequence[ModelBundle] = (),
    robustness: pd.DataFrame | None = None,
) -> TrackedRun:
    """Everything one MLflow run of a variant shows.

    Args:
        per_gene: The per-gene table (a ``gene`` column), logged as ``per_gene.csv``.
        metrics: The variant's metrics; the numeric ones are logged.
        histogram: The per-gene r histogram (PIL image), logged as ``r_histogram.png``.
        maps: The gene maps (PIL image), logged as ``gene_maps.png``.
        feature_selection: The split, panel and target settings the folds were made with.
        variant: The run name.
        kind: ``model``, ``baseline`` or ``reference`` (tag ``brstnet.kind``).
        histories: A trained model's training history per fold (``stage``, ``epoch`` and
            loss / validation columns); none for a baseline.
        models: The model bundle per fold, in the order of ``histories``.
        robustness: The variant's r under degraded copies of the held-out slides
            (:func:`brstnet.evaluation.robustness.robustness_table`), logged as
            ``robustness.csv`` and metrics ``<condition>_median_r`` / ``..._median_r_kept``.

    Returns:
        The run: feature-selection and model parameters (the last fold's settings, the
        test patients of each fold), metrics with each fold's best epoch, epoch curves,
        the table, the images and the models (``fold<k>``).
    """
    fs = feature_selection
    params: dict[str, Any] = {
        "variant": variant,
        "kind": kind,
        "split_scheme": fs.split.scheme,
        "panel_method": fs.panel.method,
        "panel_size": fs.panel.n_genes,
        "target_transform": fs.targets.transform,
        "target_smoothing": fs.targets.smoothing,
        "split_seed": fs.split.seed,
    }
    run = TrackedRun(
        name=variant,
        metrics=numeric_metrics(metrics),
        tables={"per_gene.csv": per_gene.set_index("gene")},
        images={"r_histogram.png": histogram, "gene_maps.png": maps},
        tags={"brstnet.kind": kind},
    )
    spans = []
    for fold, (history, model) in enumerate(zip(histories, models, strict=True)):
        config, training = model.config, model.config["training"]
        params.update(_model_params(config))
        params[f"fold{fold}_test_patients"] = ",".join(config["test_patients"])
        run.metrics[f"fold{fold}_best_epoch"] = training["best_epoch"]
        for name in (INNER_MEDIAN_R, INNER_MEDIAN_PARTIAL_R):
            # what settings are chosen by (the inner validation split, never the test spots)
            if training.get(name) is not None:
                run.metrics[f"fold{fold}_{name}"] = float(training[name])
        aux = float(config["model"]["aux_weight"]) > 0
        run.histories.update(_curves(history, fold, aux=aux))
        run.models[f"fold{fold}"] = model
        probe = "stage" in history and (history["stage"] == "probe").any()
        run.tags[f"brstnet.fold{fold}_node"] = (
            f"{variant}_fold{fold}.{'fit_probe' if probe else 'train_model'}"
        )
        if TRAIN_SECONDS.name in training:  # the training record's key is the metric's name
            run.metrics[f"fold{fold}_{TRAIN_SECONDS.name}"] = training[TRAIN_SECONDS.name]
            spans.append((training["started_at"], training["ended_at"]))
    if spans:
        run.start_time = min(start for start, _ in spans)
        run.end_time = max(end for _, end in spans)
        run.metrics[TRAIN_SECONDS.name] = sum(end - start for start, end in spans)
    if len(histories):
        from .plots import epoch_curves, to_image  # matplotlib only for trained variants

        run.images["epoch_curves.png"] = to_image(epoch_curves(histories, title=variant))
    if robustness is not None and len(robustness):
        run.tables["robustness.csv"] = robustness.set_index("condition")
        for row in robustness.itertuples():
            run.metrics[f"{row.condition}_median_r"] = row.median_r
            run.metrics[f"{row.condition}_median_partial_r"] = row.median_partial_r
            if row.condition != "original":
                run.metrics[f"{row.condition}_median_r_kept"] = row.median_r_kept
    if kind in ("baseline", "reference"):
        params["backbone"] = BASELINE_BACKBONES.get(variant, variant)
        params["aux_weight"] = 0.0
    run.params = params
    return run


#: The summary columns the ``kedro run``'s own run carries for its best variant: every
#: registered headline figure (:func:`brstnet.metrics.headline_metrics`, in the order of
#: ``evaluation_summary``, gene-specific ones first).
HEADLINE_METRICS = MetricNames(headline_metrics)
#: The figure that picks the best variant: the field's headline.
HEADLINE_SCORE = MEAN_R_LIBNORM.name


def build_headline(
    summary: pd.DataFrame,
    variants: dict[str, tuple[str, float]],
    *,
    patch_size_px: int,
    window_um: float,
    name: str = "training",
) -> TrackedRun:
    """The best trained variant's headline, for the ``kedro run``'s own MLflow run.

    Args:
        summary: ``evaluation_summary`` (one row per variant, baselines included).
        variants: Trained variant -> (backbone, auxiliary weight).
        patch_size_px: The run's patch size in pixels.
        window_um: The run's patch window in micrometres.
        name: The run's name where there is no ``kedro run`` run to log into.

    Returns:
        A run holding the best variant's (highest :data:`HEADLINE_SCORE`, the mean r on
        library-normalised values; baselines and the read-depth reference never) summary
        metrics under their own names, so its row compares with
        the variants' in the runs table, and params ``best_variant``, ``backbone``,
        ``aux_weight``, ``patch_size_px``, ``window_um``; no metrics when no trained
        variant has a finite median r.
    """
    models = summary[summary["variant"].isin(list(variants))]
    models = models[np.isfinite(models[HEADLINE_SCORE].astype(float))]
    run = TrackedRun(name=name, tags={"brstnet.kind": "sweep"})
    run.params = {"patch_size_px": patch_size_px, "window_um": window_um}
    if not len(models):
        run.tags["brstnet.best_variant"] = (
            f"none (no trained variant with a finite {HEADLINE_SCORE})"
        )
        return run
    best = models.sort_values(HEADLINE_SCORE, ascending=MEAN_R_LIBNORM.ascending).iloc[0]
    backbone, aux_weight = variants[best["variant"]]
    run.params.update(best_variant=best["variant"], backbone=backbone, aux_weight=aux_weight)
    run.tags["brstnet.best_variant"] = str(best["variant"])
    run.metrics = numeric_metrics(
        {
            k: best[k].item() if hasattr(best[k], "item") else best[k]
            for k in HEADLINE_METRICS
            if k in best
        }
    )
    run.metrics["variants_compared"] = len(summary)
    return run
