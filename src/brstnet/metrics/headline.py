"""The project's figures of a variant, declared in the order of the evaluation summary
(what the model knows of genes first: r on library-normalised values, the field's
headline, and partial r given read depth; then BrST-Net's statistics on log(1 + count);
then the model's own target scale), and :func:`summarise`, which computes them.

BrST-Net: genes with median r > 0 and > 0.5; aCC (mean over genes of the pooled r),
aMAE, aRMSE. ST-Net: significant genes. TRIPLEX, DKAN: r on library-normalised values.
Also the NaN count, which is never hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import per_gene as col
from .registry import register_metric, summary_metrics

Table = Callable[[pd.DataFrame], float]


def _values(table: pd.DataFrame, column: str) -> np.ndarray:
    return table[column].to_numpy(dtype=float) if column in table else np.array([np.nan])


def _median(column: str) -> Table:
    """Median over genes of a per-gene column (NaN without a finite value or the column)."""

    def median(table: pd.DataFrame) -> float:
        values = _values(table, column)
        return float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan")

    return median


def _mean(column: str) -> Table:
    """Mean over genes of a per-gene column (NaN without a finite value or the column)."""

    def mean(table: pd.DataFrame) -> float:
        values = _values(table, column)
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    return mean


def _above(column: str, threshold: float) -> Table:
    """Genes whose per-gene ``column`` is above ``threshold`` (NaN without the column)."""

    def count(table: pd.DataFrame) -> float:
        return int((_values(table, column) > threshold).sum()) if column in table else float("nan")

    return count


def _in_every_fold(table: pd.DataFrame) -> int:
    if col.N_PREDICTED not in table:
        return int(len(table))
    return int(np.sum(table[col.N_PREDICTED] == table[col.N_PREDICTED].max()))


def _patients(predictions: Sequence[Any]) -> np.ndarray:
    return np.concatenate([p.obs["patient"].astype(str).to_numpy() for p in predictions])


def depth_r(predictions: Sequence[Any]) -> float:
    """Pearson r of the predicted log read depth with the observed one, per held-out
    patient, averaged over patients (NaN without a depth prediction).

    Args:
        predictions: One predictions AnnData per fold (obs ``patient``, ``total_counts``,
            ``predicted_log_depth``).
    """
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


# r on library-normalised values per held-out patient, averaged over genes
# (mean_r_libnorm: per gene the mean over patients): the field's headline
MEAN_R_LIBNORM = register_metric(
    col.MEAN_R_LIBNORM,
    "r, library-normalised (field's headline)",
    _mean(col.MEAN_R_LIBNORM),
    compare=0,
    plot=0,
    axis="mean r over genes and held-out patients",
)
MEDIAN_R_LIBNORM = register_metric(
    col.MEDIAN_R_LIBNORM, "median r, library-normalised", _median(col.MEDIAN_R_LIBNORM), compare=1
)
# gene-specific: r once read depth is accounted for (NaN without those columns)
MEDIAN_PARTIAL_R = register_metric(
    col.MEDIAN_PARTIAL_R,
    "median partial r | read depth",
    _median(col.MEDIAN_PARTIAL_R),
    compare=2,
    plot=1,
    axis="median partial r",
)
GENES_PARTIAL_R_GT_0 = register_metric(
    "genes_partial_r_gt_0",
    "genes with partial r > 0",
    _above(col.MEDIAN_PARTIAL_R, 0.0),
    compare=3,
    fmt="d",
)
# BrST-Net's statistics on log(1 + count) (the depth head's counts for models trained
# on library-normalised targets)
MEDIAN_R_LOG1P = register_metric(
    col.MEDIAN_R_LOG1P,
    "median r on log1p (BrST-Net)",
    _median(col.MEDIAN_R_LOG1P),
    compare=4,
    plot=2,
    axis="median r over genes",
)
GENES_POSITIVE_LOG1P = register_metric(
    "genes_positive_log1p", "genes r > 0 on log1p", _above(col.MEDIAN_R_LOG1P, 0.0), fmt="d"
)
GENES_R_GT_0_5_LOG1P = register_metric(
    "genes_r_gt_0_5_log1p",
    "genes r > 0.5 on log1p",
    _above(col.MEDIAN_R_LOG1P, 0.5),
    compare=5,
    plot=3,
    axis="genes",
    fmt="d",
)
ACC_LOG1P = register_metric(
    "aCC_log1p", "aCC on log1p (mean pooled r)", _mean(col.POOLED_R_LOG1P), compare=7
)
DEPTH_R = register_metric("depth_r", "r of the predicted read depth", depth_r, source="spots")
# the model's own target scale
N_GENES = register_metric("n_genes", "genes evaluated", len, direction="none", fmt="d")
GENES_IN_EVERY_FOLD = register_metric(
    "genes_in_every_fold", "genes in every fold's panel", _in_every_fold, direction="none", fmt="d"
)
GENES_POSITIVE = register_metric(
    "genes_positive", "genes with median r > 0", _above(col.MEDIAN_R, 0.0), fmt="d"
)
GENES_R_GT_0_5 = register_metric(
    "genes_r_gt_0_5", "genes with median r > 0.5", _above(col.MEDIAN_R, 0.5), fmt="d"
)
MEDIAN_R = register_metric(col.MEDIAN_R, "median r over genes", _median(col.MEDIAN_R))
MEAN_R = register_metric("mean_r", "mean r over genes", _mean(col.MEDIAN_R))
SIGNIFICANT_GENES = register_metric(
    "significant_genes",
    "significant genes (sign test, Holm)",
    lambda table: int(table[col.SIGNIFICANT].sum()),
    compare=6,
    fmt="d",
)
ACC = register_metric("aCC", "aCC (mean pooled r)", _mean(col.POOLED_R))
AMAE = register_metric(
    "aMAE", "mean absolute error", lambda table: float(table[col.MAE].mean()), direction="lower"
)
ARMSE = register_metric(
    "aRMSE",
    "root mean squared error",
    lambda table: float(table[col.RMSE].mean()),
    direction="lower",
)
GENES_NAN_R = register_metric(
    "genes_nan_r",
    "genes with undefined r",
    lambda table: int(np.isnan(table[col.MEDIAN_R].to_numpy(dtype=float)).sum()),
    direction="lower",
    fmt="d",
)
TEST_SPOTS = register_metric(
    "test_spots",
    "held-out spots",
    lambda predictions: int(len(_patients(predictions))),
    source="spots",
    direction="none",
    headline=False,
    fmt="d",
)
TEST_PATIENTS = register_metric(
    "test_patients",
    "held-out patients",
    lambda predictions: int(len(set(_patients(predictions)))),
    source="spots",
    direction="none",
    headline=False,
    fmt="d",
)
# logged from the training records (brstnet.evaluation.tracking), not evaluated
TRAIN_SECONDS = register_metric(
    "train_seconds", "training time", source="run", direction="lower", compare=8, fmt=".0f"
)


def summarise(table: pd.DataFrame, predictions: Sequence[Any] | None = None) -> dict[str, float]:
    """The summary figures of a variant (:func:`~brstnet.metrics.summary_metrics`), in
    their order.

    Args:
        table: The variant's per-gene table (:func:`~brstnet.metrics.per_gene_table`).
        predictions: Its held-out predictions, one AnnData per fold; without them, the
            ``spots`` figures are left out.
    """
    return {
        m.name: m.compute(table) if m.source == "genes" else m.compute(predictions)
        for m in summary_metrics()
        if m.compute is not None and (m.source == "genes" or predictions is not None)
    }
