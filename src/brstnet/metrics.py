"""Correlation and error metrics (NumPy/SciPy, pure functions).

Conventions: rows are spots, columns genes. A gene with constant observed or
predicted values has an undefined correlation: NaN, counted and reported, never 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
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


def sign_test(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ST-Net's one-sided sign test per gene over patients.

    Args:
        r: [n_patients, n_genes] correlations (NaN = undefined, left out).

    Returns:
        positives (patients with r > 0), n (patients with a finite r), one-sided p-value
        P(X >= positives) for X ~ Binomial(n, 1/2) (NaN where n = 0).
    """
    r = np.asarray(r, dtype=float)
    finite = np.isfinite(r)
    positives = ((r > 0) & finite).sum(axis=0)
    n = finite.sum(axis=0)
    p = np.array(
        [
            stats.binomtest(int(k), int(m), 0.5, alternative="greater").pvalue if m else np.nan
            for k, m in zip(positives, n, strict=True)
        ]
    )
    return positives, n, p


def holm(p: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise ``alpha``.

    NaN p-values are never rejected and do not count in the family.
    """
    p = np.asarray(p, dtype=float)
    reject = np.zeros(p.shape, dtype=bool)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    for rank, i in enumerate(order):
        if p[i] <= alpha / (m - rank):
            reject[i] = True
        else:
            break
    return reject


def _pooled(observed: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Pearson r per gene over the rows where both values are finite."""
    finite = np.isfinite(observed) & np.isfinite(predicted)
    r = np.full(observed.shape[1], np.nan)
    complete = finite.all(axis=0)
    if complete.any():
        r[complete] = pearson_per_gene(observed[:, complete], predicted[:, complete])
    for j in np.flatnonzero(~complete & finite.any(axis=0)):
        rows = finite[:, j]
        r[j] = pearson_per_gene(observed[rows, j], predicted[rows, j])[0]
    return r


def per_gene_table(
    observed: np.ndarray,
    predicted: np.ndarray,
    patients: np.ndarray,
    genes: list[str],
    *,
    alpha: float = 0.1,
    log_depth: np.ndarray | None = None,
    observed_normalised: np.ndarray | None = None,
    scales: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Per-gene evaluation over held-out spots.

    Args:
        observed, predicted: [n_spots, n_genes] in the model scale. A gene a fold's model
            does not predict (not in that fold's panel) is NaN on that fold's spots.
        patients: [n_spots] held-out patient of each spot.
        genes: gene names.
        log_depth: [n_spots] log total count of each spot: adds the partial r given it
            (``partial_r_<patient>``, ``median_partial_r``), the part of r read depth
            does not explain.
        observed_normalised: [n_spots, n_genes] library-size-normalised observed values
            (log(1 + CP10k)): adds r of the predictions with them (``r_libnorm_<patient>``,
            ``median_r_libnorm``, ``mean_r_libnorm``: mean over patients).
        scales: Other scales, name -> (observed, predicted) [n_spots, n_genes] each (e.g.
            ``libnorm`` with the depth head's library prediction, ``log1p`` with counts
            on the training scale): adds ``r_<name>_<patient>``, ``median_r_<name>``,
            ``mean_r_<name>`` and ``pooled_r_<name>``. A name given here overrides
            ``observed_normalised``'s.

    Returns:
        One row per gene: r and rho per patient (``r_<patient>``, ``rho_<patient>``),
        ``median_r`` / ``median_rho`` over patients with a finite r, ``pooled_r`` over all
        spots (aCC's per-gene r), ``mae`` / ``rmse``, ``n_predicted`` (patients whose
        model predicts the gene), sign test (``n_positive``, ``n_patients``, ``p_sign``,
        ``significant`` after Holm at ``alpha``).
    """
    import warnings

    observed = np.asarray(observed, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    patients = np.asarray(patients)
    table = pd.DataFrame(index=pd.Index(genes, name="gene"))
    rs, rhos, predicted_for = [], [], []
    for patient in sorted(set(patients)):
        mask = patients == patient
        rs.append(pearson_per_gene(observed[mask], predicted[mask]))
        rhos.append(spearman_per_gene(observed[mask], predicted[mask]))
        predicted_for.append(np.isfinite(predicted[mask]).all(axis=0))
        rs[-1][~predicted_for[-1]] = np.nan
        rhos[-1][~predicted_for[-1]] = np.nan
        table[f"r_{patient}"] = rs[-1]
        table[f"rho_{patient}"] = rhos[-1]
    pairs = {} if observed_normalised is None else {"libnorm": (observed_normalised, predicted)}
    pairs.update(scales or {})
    pairs = {
        name: (np.asarray(o, dtype=np.float64), np.asarray(p, dtype=np.float64))
        for name, (o, p) in pairs.items()
    }
    extra: dict[str, list[np.ndarray]] = {"partial_r": [], **{f"r_{n}": [] for n in pairs}}
    for patient, predicted_here in zip(sorted(set(patients)), predicted_for, strict=True):
        mask = patients == patient
        columns = {}
        if log_depth is not None:
            columns["partial_r"] = partial_pearson_per_gene(
                observed[mask], predicted[mask], np.asarray(log_depth)[mask]
            )
        for name, (obs_scale, pred_scale) in pairs.items():
            columns[f"r_{name}"] = pearson_per_gene(obs_scale[mask], pred_scale[mask])
        for name, col in columns.items():
            col[~predicted_here] = np.nan
            table[f"{name}_{patient}"] = col
            extra[name].append(col)
    r = np.vstack(rs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN genes give NaN medians and means
        table["median_r"] = np.nanmedian(r, axis=0)
        for name, cols in extra.items():
            if cols:
                table[f"median_{name}"] = np.nanmedian(np.vstack(cols), axis=0)
                if name != "partial_r":
                    table[f"mean_{name}"] = np.nanmean(np.vstack(cols), axis=0)
        for name, (obs_scale, pred_scale) in pairs.items():
            table[f"pooled_r_{name}"] = _pooled(obs_scale, pred_scale)
        table["median_rho"] = np.nanmedian(np.vstack(rhos), axis=0)
        table["pooled_r"] = _pooled(observed, predicted)
        table["mae"] = np.nanmean(np.abs(observed - predicted), axis=0)
        table["rmse"] = np.sqrt(np.nanmean((observed - predicted) ** 2, axis=0))
    table["n_predicted"] = np.vstack(predicted_for).sum(axis=0)
    positives, n, p = sign_test(r)
    table["n_positive"], table["n_patients"], table["p_sign"] = positives, n, p
    table["significant"] = holm(p, alpha)
    return table


def summarise(table: pd.DataFrame) -> dict[str, float]:
    """The headline numbers of a per-gene table.

    BrST-Net: genes with median r > 0 and > 0.5; aCC (mean over genes of the pooled r),
    aMAE, aRMSE. ST-Net: significant genes. Also the NaN count, which is never hidden.
    """
    median = table["median_r"].to_numpy(dtype=float)
    pooled = table["pooled_r"].to_numpy(dtype=float)
    every = (
        table["n_predicted"] == table["n_predicted"].max()
        if "n_predicted" in table
        else np.ones(len(table), bool)
    )

    def values_of(column: str) -> np.ndarray:
        return table[column].to_numpy(dtype=float) if column in table else np.array([np.nan])

    def median_of(column: str) -> float:
        values = values_of(column)
        return float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan")

    def mean_of(column: str) -> float:
        values = values_of(column)
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    def count(column: str, threshold: float) -> float:
        return int((values_of(column) > threshold).sum()) if column in table else float("nan")

    return {
        "n_genes": int(len(table)),
        "genes_in_every_fold": int(np.sum(every)),
        "genes_nan_r": int(np.isnan(median).sum()),
        "genes_positive": int((median > 0).sum()),
        "genes_r_gt_0_5": int((median > 0.5).sum()),
        "median_r": float(np.nanmedian(median)) if np.isfinite(median).any() else float("nan"),
        "mean_r": float(np.nanmean(median)) if np.isfinite(median).any() else float("nan"),
        # gene-specific: r once read depth is accounted for (NaN without those columns)
        "median_partial_r": median_of("median_partial_r"),
        "genes_partial_r_gt_0": count("median_partial_r", 0.0),
        # the field's headline (TRIPLEX, DKAN): r on library-normalised values per held-out
        # patient, averaged over genes (mean_r_libnorm: per gene the mean over patients)
        "mean_r_libnorm": mean_of("mean_r_libnorm"),
        "median_r_libnorm": median_of("median_r_libnorm"),
        # BrST-Net's statistics on log(1 + count) (the depth head's counts for models
        # trained on library-normalised targets)
        "median_r_log1p": median_of("median_r_log1p"),
        "genes_positive_log1p": count("median_r_log1p", 0.0),
        "genes_r_gt_0_5_log1p": count("median_r_log1p", 0.5),
        "aCC_log1p": mean_of("pooled_r_log1p"),
        "significant_genes": int(table["significant"].sum()),
        "aCC": float(np.nanmean(pooled)) if np.isfinite(pooled).any() else float("nan"),
        "aMAE": float(table["mae"].mean()),
        "aRMSE": float(table["rmse"].mean()),
    }
