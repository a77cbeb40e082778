"""Per-gene correlations (NumPy/SciPy, pure functions): Pearson r, partial r given a
covariate, Spearman rho.

Conventions: rows are spots, columns genes. A gene with constant observed or
predicted values has an undefined correlation: NaN, counted and reported, never 0.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def pearson_per_gene(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson r of each column over rows.

    Args:
        y_true: [n_spots, n_genes] observed.
        y_pred: [n_spots, n_genes] predicted.

    Returns:
        [n_genes] r; NaN where either side is constant (or has fewer than 2 rows).
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shapes differ: observed {y_true.shape}, predicted {y_pred.shape}")
    if y_true.ndim == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    if len(y_true) < 2:
        return np.full(y_true.shape[1], np.nan)
    a = y_true - y_true.mean(axis=0)
    b = y_pred - y_pred.mean(axis=0)
    ss_a, ss_b = (a * a).sum(axis=0), (b * b).sum(axis=0)
    # constant columns: zero spread up to rounding (relative to the values' size)
    tol_a = 1e-12 * np.maximum((y_true * y_true).sum(axis=0), 1e-300)
    tol_b = 1e-12 * np.maximum((y_pred * y_pred).sum(axis=0), 1e-300)
    constant = (ss_a <= tol_a) | (ss_b <= tol_b) | ~np.isfinite(ss_a * ss_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=0) / np.sqrt(ss_a * ss_b)
    r[constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def partial_pearson_per_gene(
    y_true: np.ndarray, y_pred: np.ndarray, covariate: np.ndarray
) -> np.ndarray:
    """Partial Pearson r of each column given one covariate per row.

    The correlation of what is left of observed and predicted after each is regressed
    (least squares, with intercept) on ``covariate``: for spot-level expression and the
    spot's log total count, the part of r that read depth (cellularity) does not explain.

    Args:
        y_true: [n_spots, n_genes] observed.
        y_pred: [n_spots, n_genes] predicted.
        covariate: [n_spots] e.g. log(total counts) of each spot.

    Returns:
        [n_genes] partial r; NaN where a residual is constant (a prediction that is a
        linear function of the covariate has no partial r) or the covariate is constant.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    z = np.asarray(covariate, dtype=np.float64).ravel()
    if len(z) != len(y_true):
        raise ValueError(f"covariate has {len(z)} rows for {len(y_true)} spots")
    zc = z - z.mean() if len(z) else z
    ss_z = float(zc @ zc)
    if len(z) < 3 or ss_z <= 1e-12 * max(float(z @ z), 1e-300):
        return np.full(y_true.shape[1], np.nan)

    def residual(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Residuals, and which columns have (next to) nothing left after the regression."""
        yc = y - y.mean(axis=0)
        res = yc - np.outer(zc, (zc @ yc) / ss_z)
        ss_res, ss_y = (res * res).sum(axis=0), (y * y).sum(axis=0)
        return res, (ss_res <= 1e-10 * np.maximum(ss_y, 1e-300)) | ~np.isfinite(ss_res)

    a, flat_a = residual(y_true)
    b, flat_b = residual(y_pred)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    r[flat_a | flat_b] = np.nan
    return np.clip(r, -1.0, 1.0)


def spearman_per_gene(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Spearman rho of each column: Pearson r of the ranks (ties averaged)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    return pearson_per_gene(stats.rankdata(y_true, axis=0), stats.rankdata(y_pred, axis=0))
