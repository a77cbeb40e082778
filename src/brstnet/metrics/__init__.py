"""Correlation and error metrics (NumPy/SciPy, pure functions) and the registry of the
figures that judge a variant. The bottom layer: it imports nothing of brstnet but
:mod:`brstnet.registry`.

- :mod:`.correlation`: per-gene Pearson r, partial r given a covariate, Spearman rho.
- :mod:`.significance`: ST-Net's sign test over patients, Holm's correction.
- :mod:`.per_gene`: the per-gene table over held-out spots, and its column names.
- :mod:`.registry`: :class:`Metric`, :func:`register_metric` and the lists read from it
  (summary columns, MLflow headline and comparison columns, plotted figures).
- :mod:`.headline`: the project's figures, declared once, and :func:`summarise`.
- :mod:`.validation`: a training epoch's figures on its validation spots.

Conventions: rows are spots, columns genes. A gene with constant observed or
predicted values has an undefined correlation: NaN, counted and reported, never 0.
"""

from __future__ import annotations

from .correlation import partial_pearson_per_gene, pearson_per_gene, spearman_per_gene
from .headline import summarise
from .per_gene import per_gene_table
from .registry import (
    Metric,
    MetricNames,
    compared_metrics,
    get_metric,
    headline_metrics,
    plotted_metrics,
    register_metric,
    registered_metrics,
    summary_metrics,
    unregister_metric,
)
from .significance import holm, sign_test
from .validation import Validation, validation_metrics, validation_scores

__all__ = [
    "Metric",
    "MetricNames",
    "compared_metrics",
    "get_metric",
    "headline_metrics",
    "holm",
    "partial_pearson_per_gene",
    "pearson_per_gene",
    "per_gene_table",
    "plotted_metrics",
    "register_metric",
    "registered_metrics",
    "sign_test",
    "spearman_per_gene",
    "summarise",
    "summary_metrics",
    "unregister_metric",
    "Validation",
    "validation_metrics",
    "validation_scores",
]
