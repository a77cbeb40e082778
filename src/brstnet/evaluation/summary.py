"""A variant's numbers over all its folds: per-gene table, headline metrics, the summary
across variants, and which section and genes its maps show (pandas / NumPy only)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from brstnet.metrics import per_gene_table, summarise

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)

#: The columns of ``evaluation_summary``, in order: what the model knows of genes first
#: (r on library-normalised values, the field's headline; partial r given read depth),
#: then BrST-Net's statistics on log(1 + count), then the model's own target scale.
SUMMARY_COLUMNS = (
    "variant",
    "targets",
    "mean_r_libnorm",
    "median_r_libnorm",
    "median_partial_r",
    "genes_partial_r_gt_0",
    "median_r_log1p",
    "genes_positive_log1p",
    "genes_r_gt_0_5_log1p",
    "aCC_log1p",
    "depth_r",
    "n_genes",
    "genes_in_every_fold",
    "genes_positive",
    "genes_r_gt_0_5",
    "median_r",
    "mean_r",
    "significant_genes",
    "aCC",
    "aMAE",
    "aRMSE",
    "genes_nan_r",
    "test_spots",
    "test_patients",
)


def union_genes(predictions: Sequence[ad.AnnData]) -> list[str]:
    """Every gene of any fold's panel, in order of first appearance."""
    return list(dict.fromkeys(str(g) for p in predictions for g in p.var_names))


def on_genes(values: np.ndarray, names: Sequence[str], genes: Sequence[str]) -> np.ndarray:
    """Columns of ``values`` reordered onto ``genes``.

    Args:
        values: [n_spots, len(names)] one column per gene of ``names``.
        names: The genes of ``values``' columns.
        genes: The genes wanted.

    Returns:
        [n_spots, len(genes)]; NaN in the columns of genes not in ``names``.
    """
    return pd.DataFrame(np.asarray(values), columns=list(names)).reindex(columns=genes).to_numpy()


def stack_folds(
    predictions: Sequence[ad.AnnData], genes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All folds' held-out spots on one set of genes.

    Args:
        predictions: One predictions AnnData per fold (X predicted, layer ``observed``,
            obs ``patient``).
        genes: The genes to evaluate (usually :func:`union_genes`).

    Returns:
        observed [n_spots, len(genes)], predicted [n_spots, len(genes)] (NaN where a
        fold's panel lacks a gene) and patients [n_spots], the folds' spots one after
        the other.
    """
    observed, predicted = [], []
    for p in predictions:
        names = [str(g) for g in p.var_names]
        predicted.append(on_genes(p.X, names, genes))
        observed.append(on_genes(p.layers["observed"], names, genes))
    patients = np.concatenate([p.obs["patient"].astype(str).to_numpy() for p in predictions])
    return np.concatenate(observed), np.concatenate(predicted), patients


#: Library-size normalisation of the observed counts: counts per 10,000 (scanpy's
#: ``normalize_total(target_sum=1e4)``), then log(1 + x).
LIBNORM_TARGET = 1e4


def depth_terms(
    predictions: Sequence[ad.AnnData], genes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Each held-out spot's log total count and its library-size-normalised observed values.

    Args:
        predictions: One predictions AnnData per fold (obs ``total_counts``: the spot's
            reads over all genes; layer ``observed_counts``).
        genes: The genes evaluated.

    Returns:
        log(total counts) [n_spots] and log(1 + CP10k) [n_spots, len(genes)] (NaN where a
        fold's panel lacks a gene), the folds' spots one after the other; None when the
        predictions carry no total counts.
    """
    if not all("total_counts" in p.obs for p in predictions):
        return None
    depth, normalised = [], []
    for p in predictions:
        total = np.maximum(p.obs["total_counts"].to_numpy(dtype=np.float64), 1.0)
        counts = np.asarray(p.layers["observed_counts"], dtype=np.float64)
        names = [str(g) for g in p.var_names]
        depth.append(np.log(total))
        normalised.append(
            on_genes(np.log1p(counts / total[:, None] * LIBNORM_TARGET), names, genes)
        )
    return np.concatenate(depth), np.concatenate(normalised)


def scale_terms(
    predictions: Sequence[ad.AnnData], genes: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Observed and predicted values on the two scales every variant is read on.

    - ``libnorm``: observed log(1 + CP10k); predicted: the ``predicted_library`` layer
      (a depth-head model's composition) where a fold has it, else X.
    - ``log1p``: observed log(1 + count); predicted: the ``predicted_log1p`` layer (counts
      on the training scale, depth x composition) where a fold has it, else X.

    r is unchanged by a z-score, so X stands for a model trained on that scale.

    Returns:
        name -> (observed, predicted), each [n_spots, len(genes)], the folds' spots one
        after the other; empty when the predictions carry no total counts.
    """
    if not all("total_counts" in p.obs for p in predictions):
        return {}
    out: dict[str, tuple[list, list]] = {"libnorm": ([], []), "log1p": ([], [])}
    for p in predictions:
        total = np.maximum(p.obs["total_counts"].to_numpy(dtype=np.float64), 1.0)
        counts = np.asarray(p.layers["observed_counts"], dtype=np.float64)
        names = [str(g) for g in p.var_names]
        observed = {
            "libnorm": np.log1p(counts / total[:, None] * LIBNORM_TARGET),
            "log1p": np.log1p(counts),
        }
        layer = {"libnorm": "predicted_library", "log1p": "predicted_log1p"}
        for scale, (obs_parts, pred_parts) in out.items():
            predicted = p.layers[layer[scale]] if layer[scale] in p.layers else p.X
            obs_parts.append(on_genes(observed[scale], names, genes))
            pred_parts.append(on_genes(predicted, names, genes))
    return {k: (np.concatenate(o), np.concatenate(q)) for k, (o, q) in out.items()}


def depth_r(predictions: Sequence[ad.AnnData]) -> float:
    """Pearson r of the predicted log read depth with the observed one, per held-out
    patient, averaged over patients (NaN without a depth prediction)."""
    if not all("predicted_log_depth" in p.obs and "total_counts" in p.obs for p in predictions):
        return float("nan")
    obs = pd.concat([p.obs for p in predictions])
    observed = np.log(np.maximum(obs["total_counts"].to_numpy(np.float64), 1.0))
    predicted = obs["predicted_log_depth"].to_numpy(np.float64)
    patients = obs["patient"].astype(str).to_numpy()
    rs = [
        float(np.corrcoef(observed[patients == q], predicted[patients == q])[0, 1])
        for q in sorted(set(patients))
        if (patients == q).sum() > 2 and np.std(predicted[patients == q]) > 0
    ]
    return float(np.mean(rs)) if rs else float("nan")


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
        :func:`brstnet.metrics.per_gene_table`) and the metrics: ``variant``, the numbers
        of :func:`brstnet.metrics.summarise`, ``test_spots`` and ``test_patients``.
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
        **summarise(table),
        "depth_r": depth_r(predictions),
        "test_spots": int(len(patients)),
        "test_patients": int(len(set(patients))),
    }
    if metrics["genes_in_every_fold"] < metrics["n_genes"]:
        logger.info(
            "%s: the folds' panels share %d genes; %d genes are in some folds' panels only",
            metrics["variant"],
            metrics["genes_in_every_fold"],
            metrics["n_genes"] - metrics["genes_in_every_fold"],
        )
    logger.info(
        "%s (%s targets): r on library-normalised counts mean %.3f, median %.3f; median "
        "partial r given read depth %.3f (%s genes > 0); on log1p: median r %.3f, %s of %d "
        "genes > 0, %s > 0.5, aCC %.3f; depth r %.3f; %d significant, %d NaN",
        metrics["variant"],
        metrics["targets"],
        metrics["mean_r_libnorm"],
        metrics["median_r_libnorm"],
        metrics["median_partial_r"],
        metrics["genes_partial_r_gt_0"],
        metrics["median_r_log1p"],
        metrics["genes_positive_log1p"],
        metrics["n_genes"],
        metrics["genes_r_gt_0_5_log1p"],
        metrics["aCC_log1p"],
        metrics["depth_r"],
        metrics["significant_genes"],
        metrics["genes_nan_r"],
    )
    return table.reset_index(), metrics


def summary_table(metrics: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per variant (``evaluation_summary``), best mean r on library-normalised
    values first (the field's headline), NaN last.

    Args:
        metrics: The metrics of :func:`evaluate_predictions`, one per variant.

    Returns:
        The :data:`SUMMARY_COLUMNS` of every variant.
    """
    return (
        pd.DataFrame(list(metrics))
        .reindex(columns=list(SUMMARY_COLUMNS))
        .sort_values(["mean_r_libnorm", "aCC"], ascending=False, na_position="last")
        .reset_index(drop=True)
    )


@dataclass(frozen=True)
class MapChoice:
    """What a variant's gene maps show.

    Attributes:
        section: The held-out section with the most predicted spots.
        fold: Position in the predictions of the fold that holds it out.
        genes: The genes drawn, all in that fold's panel.
    """

    section: str
    fold: int
    genes: list[str]


def choose_maps(
    per_gene: pd.DataFrame,
    predictions: Sequence[ad.AnnData],
    *,
    n_best_genes: int,
    map_genes: Sequence[str],
) -> MapChoice:
    """The largest held-out section, and the genes to draw on it.

    Genes: the ``n_best_genes`` of the highest finite median r, then the ``map_genes``
    not already among them; only genes the section's fold model predicts (its own
    panel); the panel's first gene when none is left.

    Args:
        per_gene: The per-gene table of :func:`evaluate_predictions` (``gene``,
            ``median_r``).
        predictions: One predictions AnnData per fold (obs ``section``).
        n_best_genes: How many of the best genes to draw.
        map_genes: Genes always drawn when in the panel.
    """
    spots = pd.concat([p.obs.assign(_fold=i) for i, p in enumerate(predictions)])
    section = spots["section"].value_counts().index[0]
    fold = int(spots.loc[spots["section"] == section, "_fold"].iloc[0])
    names = [str(g) for g in predictions[fold].var_names]
    panel = set(names)
    ranked = [
        g
        for g in per_gene.dropna(subset=["median_r"]).sort_values("median_r", ascending=False)[
            "gene"
        ]
        if g in panel
    ]
    best = ranked[:n_best_genes]
    genes = best + [g for g in map_genes if g in panel and g not in best]
    return MapChoice(section=section, fold=fold, genes=genes or names[:1])
