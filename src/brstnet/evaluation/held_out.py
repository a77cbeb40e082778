"""A variant's held-out spots of all folds on one set of genes: observed and predicted
values, each spot's read depth, and the scales every variant is read on (pandas / NumPy
only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from brstnet.metrics.per_gene import LIBNORM, LOG1P

if TYPE_CHECKING:
    import anndata as ad


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
    out: dict[str, tuple[list, list]] = {LIBNORM: ([], []), LOG1P: ([], [])}
    for p in predictions:
        total = np.maximum(p.obs["total_counts"].to_numpy(dtype=np.float64), 1.0)
        counts = np.asarray(p.layers["observed_counts"], dtype=np.float64)
        names = [str(g) for g in p.var_names]
        observed = {
            LIBNORM: np.log1p(counts / total[:, None] * LIBNORM_TARGET),
            LOG1P: np.log1p(counts),
        }
        layer = {LIBNORM: "predicted_library", LOG1P: "predicted_log1p"}
        for scale, (obs_parts, pred_parts) in out.items():
            predicted = p.layers[layer[scale]] if layer[scale] in p.layers else p.X
            obs_parts.append(on_genes(observed[scale], names, genes))
            pred_parts.append(on_genes(predicted, names, genes))
    return {k: (np.concatenate(o), np.concatenate(q)) for k, (o, q) in out.items()}
