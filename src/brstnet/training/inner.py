"""The inner split's verdict: the epoch a fold's final model trains for, and the
inner-validation figures settings are compared by (never the held-out patients')."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics.validation import VAL_MEAN_R, VAL_MEDIAN_PARTIAL_R, VAL_MEDIAN_R


def select_epoch(curves: list[list[float]], default: int) -> tuple[int, float]:
    """The epoch (1-based) with the best validation r averaged over inner folds.

    Args:
        curves: Per inner fold, the validation mean r after each epoch.
        default: Returned when there is no finite validation r at all.

    Returns:
        The epoch and its mean validation r (NaN for ``default``).
    """
    if not curves:
        return default, float("nan")
    mean_curve = np.nanmean(np.asarray(curves, dtype=float), axis=0)
    if not np.isfinite(mean_curve).any():
        return default, float("nan")
    best = int(np.nanargmax(mean_curve))
    return best + 1, float(mean_curve[best])


#: The inner-validation figures of the chosen epoch (see :func:`inner_validation`): the
#: registered validation figures settings are compared by, named ``inner_<figure>``.
INNER_METRICS = {
    m.name: f"inner_{m.name}" for m in (VAL_MEAN_R, VAL_MEDIAN_R, VAL_MEDIAN_PARTIAL_R)
}
INNER_MEAN_R = INNER_METRICS[VAL_MEAN_R.name]
INNER_MEDIAN_R = INNER_METRICS[VAL_MEDIAN_R.name]
INNER_MEDIAN_PARTIAL_R = INNER_METRICS[VAL_MEDIAN_PARTIAL_R.name]


def inner_validation(history: pd.DataFrame | list[dict], epoch: int) -> dict[str, float]:
    """The inner validation's figures at ``epoch``, averaged over the inner folds.

    These are what settings are chosen by (never the held-out patients): the mean and
    median per-gene r and the median partial r given read depth of the validation spots.

    Args:
        history: Training history rows (``stage`` inner<k>, ``epoch``, ``val_*``).
        epoch: The chosen epoch (1-based).

    Returns:
        ``inner_val_mean_r``, ``inner_val_median_r``, ``inner_val_median_partial_r``;
        NaN where the history has no such validation (no inner split, e.g. one training
        section, or a history written before the figure existed).
    """
    table = pd.DataFrame(history)
    out = dict.fromkeys(INNER_METRICS.values(), float("nan"))
    if table.empty or "stage" not in table:
        return out
    rows = table[table["stage"].astype(str).str.startswith("inner") & (table["epoch"] == epoch)]
    for column, name in INNER_METRICS.items():
        if column in rows and rows[column].notna().any():
            out[name] = float(rows[column].mean())
    return out
