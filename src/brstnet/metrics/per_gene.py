"""The per-gene evaluation table over held-out spots, and the names of its columns the
headline figures read."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .correlation import partial_pearson_per_gene, pearson_per_gene, spearman_per_gene
from .significance import holm, sign_test

#: The scales every variant is read on besides its own (``scales`` of
#: :func:`per_gene_table`): library-normalised values and log(1 + count).
LIBNORM, LOG1P = "libnorm", "log1p"
#: Columns of :func:`per_gene_table` (``median_<x>``, ``mean_<x>`` and ``pooled_r_<scale>``
#: are named from the partial r and the scales).
MEDIAN_R = "median_r"
POOLED_R = "pooled_r"
PARTIAL_R = "partial_r"
MEDIAN_PARTIAL_R = "median_partial_r"
MEAN_R_LIBNORM = "mean_r_libnorm"
MEDIAN_R_LIBNORM = "median_r_libnorm"
MEDIAN_R_LOG1P = "median_r_log1p"
POOLED_R_LOG1P = "pooled_r_log1p"
N_PREDICTED = "n_predicted"
SIGNIFICANT = "significant"
MAE, RMSE = "mae", "rmse"


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
        observed: [n_spots, n_genes] in the model scale.
        predicted: [n_spots, n_genes] in the model scale. A gene a fold's model does not
            predict (not in that fold's panel) is NaN on that fold's spots.
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
    pairs = {} if observed_normalised is None else {LIBNORM: (observed_normalised, predicted)}
    pairs.update(scales or {})
    pairs = {
        name: (np.asarray(o, dtype=np.float64), np.asarray(p, dtype=np.float64))
        for name, (o, p) in pairs.items()
    }
    extra: dict[str, list[np.ndarray]] = {PARTIAL_R: [], **{f"r_{n}": [] for n in pairs}}
    for patient, predicted_here in zip(sorted(set(patients)), predicted_for, strict=True):
        mask = patients == patient
        columns = {}
        if log_depth is not None:
            columns[PARTIAL_R] = partial_pearson_per_gene(
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
        table[MEDIAN_R] = np.nanmedian(r, axis=0)
        for name, cols in extra.items():
            if cols:
                table[f"median_{name}"] = np.nanmedian(np.vstack(cols), axis=0)
                if name != PARTIAL_R:
                    table[f"mean_{name}"] = np.nanmean(np.vstack(cols), axis=0)
        for name, (obs_scale, pred_scale) in pairs.items():
            table[f"pooled_r_{name}"] = _pooled(obs_scale, pred_scale)
        table["median_rho"] = np.nanmedian(np.vstack(rhos), axis=0)
        table[POOLED_R] = _pooled(observed, predicted)
        table[MAE] = np.nanmean(np.abs(observed - predicted), axis=0)
        table[RMSE] = np.sqrt(np.nanmean((observed - predicted) ** 2, axis=0))
    table[N_PREDICTED] = np.vstack(predicted_for).sum(axis=0)
    positives, n, p = sign_test(r)
    table["n_positive"], table["n_patients"], table["p_sign"] = positives, n, p
    table[SIGNIFICANT] = holm(p, alpha)
    return table
