"""A training epoch's figures on its validation spots, declared in the registry: the
mean per-gene r picks the epoch; the median r and the median partial r given read depth
are what settings are compared by; the depth head's r with the spots' log read depth.

:func:`validation_scores` computes them as the training loop records them (a figure
whose input is missing is left out, not NaN).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .registry import Metric, register_metric, registered_metrics


@dataclass(frozen=True)
class Validation:
    """What an epoch's figures are computed from.

    Attributes:
        r: [n_genes] Pearson r of the predictions on the validation spots.
        partial_r: [n_genes] partial r given the spots' log read depth (None: the spots
            carry no read depth).
        depth_r: The depth head's r with the log read depth (None: no depth head).
    """

    r: np.ndarray
    partial_r: np.ndarray | None = None
    depth_r: float | None = None


def _finite(stat: Callable[[np.ndarray], float], values: np.ndarray | None) -> float | None:
    """``stat`` over the finite values; NaN when there are none; None without values."""
    if values is None:
        return None
    return float(stat(values)) if np.isfinite(values).any() else float("nan")


VAL_MEAN_R = register_metric(
    "val_mean_r",
    "validation mean r",
    lambda v: _finite(np.nanmean, v.r),
    source="validation",
    headline=False,
)
VAL_MEDIAN_R = register_metric(
    "val_median_r",
    "validation median r",
    lambda v: _finite(np.nanmedian, v.r),
    source="validation",
    headline=False,
)
VAL_MEDIAN_PARTIAL_R = register_metric(
    "val_median_partial_r",
    "validation median partial r | read depth",
    lambda v: _finite(np.nanmedian, v.partial_r),
    source="validation",
    headline=False,
)
VAL_DEPTH_R = register_metric(
    "val_depth_r",
    "validation r of the predicted read depth",
    lambda v: None if v.depth_r is None else float(v.depth_r),
    source="validation",
    headline=False,
)


def validation_metrics() -> tuple[Metric, ...]:
    """The registered validation figures, in registration order."""
    return registered_metrics("validation")


def validation_scores(validation: Validation) -> dict[str, float]:
    """Every registered validation figure that ``validation`` has the input of."""
    scores = {m.name: m.compute(validation) for m in validation_metrics() if m.compute}
    return {name: value for name, value in scores.items() if value is not None}
