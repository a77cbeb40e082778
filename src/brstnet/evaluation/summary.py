"""A variant's numbers over all its folds (per-gene table and the registered figures),
and the summary across variants (pandas / NumPy only)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from brstnet.metrics import MetricNames, per_gene_table, summarise, summary_metrics
from brstnet.metrics import headline as figures

from .held_out import depth_terms, scale_terms, stack_folds, union_genes

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)

#: The columns of ``evaluation_summary`` that name a variant, before its figures.
LABEL_COLUMNS = ("variant", "targets")
#: The columns of ``evaluation_summary``, in order: the variant, its targets, then every
#: registered summary figure (:func:`brstnet.metrics.summary_metrics`, in registration
#: order: what the model knows of genes first, then BrST-Net's statistics on
#: log(1 + count), then the model's own target scale).
SUMMARY_COLUMNS = MetricNames(summary_metrics, before=LABEL_COLUMNS)


def targets_label(predictions: Sequence[ad.AnnData]) -> str:
    """The variant's training targets as the tables label them (``library``, ``log1p``;
    ``library, smoothed 3x3`` when smoothed over neighbouring spots)."""

    def label(p: ad.AnnData) -> str:
        smoothed = str(p.uns.get("smoothing", "none")) != "none"
        return str(p.uns.get("transform", "?")) + (", smoothed 3x3" if smoothed else "")

    return "/".join(dict.fromkeys(label(p) for p in predictions))


def evaluate_predictions(
    predictions: Sequence[ad.AnnData], *, alpha: float
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-gene table and headline metrics over all held-out patients of a variant.

    Each fold has its own panel (fitted on its training patients): the union of the
    panels is evaluated, a gene counting for the held-out patients of the folds whose
    model predicts it.

    Args:
        predictions: One predictions AnnData per fold, all of one variant
            (``uns["variant"]``).
        alpha: Family-wise level of the Holm-corrected sign test.

    Returns:
        The per-gene table (a ``gene`` column, then the columns of
        :func:`brstnet.metrics.per_gene_table`) and the metrics: ``variant``,
        ``targets``, then the figures of :func:`brstnet.metrics.summarise` (with
        ``test_spots`` and ``test_patients``), in the order of :data:`SUMMARY_COLUMNS`.
    """
    genes = union_genes(predictions)
    observed, predicted, patients = stack_folds(predictions, genes)
    depth = depth_terms(predictions, genes)
    table = per_gene_table(
        observed,
        predicted,
        patients,
        genes,
        alpha=alpha,
        log_depth=None if depth is None else depth[0],
        scales=scale_terms(predictions, genes),
    )
    metrics = {
        "variant": str(predictions[0].uns["variant"]),
        "targets": targets_label(predictions),
        **summarise(table, predictions),
    }
    _log(metrics)
    return table.reset_index(), metrics


def _log(metrics: dict[str, Any]) -> None:
    """The variant's figures in the log."""

    def value(metric: Any) -> Any:
        return metrics[metric.name]

    in_every_fold, n_genes = value(figures.GENES_IN_EVERY_FOLD), value(figures.N_GENES)
    if in_every_fold < n_genes:
        logger.info(
            "%s: the folds' panels share %d genes; %d genes are in some folds' panels only",
            metrics["variant"],
            in_every_fold,
            n_genes - in_every_fold,
        )
    logger.info(
        "%s (%s targets): r on library-normalised counts mean %.3f, median %.3f; median "
        "partial r given read depth %.3f (%s genes > 0); on log1p: median r %.3f, %s of %d "
        "genes > 0, %s > 0.5, aCC %.3f; depth r %.3f; %d significant, %d NaN",
        metrics["variant"],
        metrics["targets"],
        value(figures.MEAN_R_LIBNORM),
        value(figures.MEDIAN_R_LIBNORM),
        value(figures.MEDIAN_PARTIAL_R),
        value(figures.GENES_PARTIAL_R_GT_0),
        value(figures.MEDIAN_R_LOG1P),
        value(figures.GENES_POSITIVE_LOG1P),
        n_genes,
        value(figures.GENES_R_GT_0_5_LOG1P),
        value(figures.ACC_LOG1P),
        value(figures.DEPTH_R),
        value(figures.SIGNIFICANT_GENES),
        value(figures.GENES_NAN_R),
    )


def summary_table(metrics: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per variant (``evaluation_summary``), best mean r on library-normalised
    values first (the field's headline), NaN last.

    Args:
        metrics: The metrics of :func:`evaluate_predictions`, one per variant.

    Returns:
        The :data:`SUMMARY_COLUMNS` of every variant. A figure that is not registered is
        left out with a warning naming it (register it with
        :func:`brstnet.metrics.register_metric` to have it in the table).
    """
    columns = list(SUMMARY_COLUMNS)
    unregistered = list(dict.fromkeys(k for m in metrics for k in m if k not in columns))
    if unregistered:
        logger.warning(
            "evaluation summary: %s not registered metrics, left out (register them with "
            "brstnet.metrics.register_metric)",
            ", ".join(unregistered),
        )
    order = (figures.MEAN_R_LIBNORM, figures.ACC)
    return (
        pd.DataFrame(list(metrics))
        .reindex(columns=columns)
        .sort_values(
            [m.name for m in order],
            ascending=[m.ascending for m in order],
            na_position="last",
        )
        .reset_index(drop=True)
    )
