"""Which genes are predicted better than chance: ST-Net's sign test over patients and
Holm's correction for the many genes."""

from __future__ import annotations

import numpy as np
from scipy import stats


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
