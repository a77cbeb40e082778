"""The metric registry: each figure that judges a variant declared once, with everything
the rest of the project needs to know about it.

The evaluation summary's columns, the figures an MLflow run logs and the kedro run's
headline, the MLflow runs table's comparison columns and the panels of the summary plot
are all read from here, in registration order. A figure is added with
:func:`register_metric` and appears in all of them; another package adds its own by
naming a module that registers them in the ``brstnet.metrics`` entry-point group
(imported at the first use of the registry, :func:`brstnet.registry.load_plugins`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from brstnet.registry import load_plugins, lookup

__all__ = [
    "ENTRY_POINTS",
    "Metric",
    "MetricNames",
    "compared_metrics",
    "get_metric",
    "headline_metrics",
    "plotted_metrics",
    "register_metric",
    "registered_metrics",
    "summary_metrics",
    "unregister_metric",
]

#: What a metric is computed from: ``genes``: the per-gene table of a variant
#: (:func:`brstnet.metrics.per_gene_table`); ``spots``: the variant's held-out predictions
#: (one AnnData per fold); ``run``: the variant's training records (logged to MLflow, not
#: in the evaluation summary); ``validation``: a training epoch's per-gene figures on the
#: validation spots (:mod:`brstnet.metrics.validation`; epoch curves, not in the summary).
Source = Literal["genes", "spots", "run", "validation"]
SOURCES = ("genes", "spots", "run", "validation")
Direction = Literal["higher", "lower", "none"]


@dataclass(frozen=True)
class Metric:
    """One figure of a variant.

    Attributes:
        name: Its name: the evaluation summary's column, the MLflow metric.
        label: What it is, in words (the summary plot's panel title).
        compute: The figure from its source (a per-gene table, the held-out
            predictions, or an epoch's :class:`~brstnet.metrics.validation.Validation`);
            None for a ``run`` figure (logged by :mod:`brstnet.evaluation.tracking`).
        source: What it is computed from (:data:`Source`).
        direction: ``higher`` or ``lower`` is better; ``none``: a count that describes
            the evaluation (genes, spots), not its quality.
        headline: Carried by the ``kedro run``'s own MLflow run for its best variant.
        compare: Position among the MLflow runs table's comparison columns (None: not
            shown there).
        plot: Position among the summary plot's panels (None: not drawn).
        axis: The plot's y-axis label.
        fmt: Format spec of its value in tables and messages (``.3f``, ``d``).
    """

    name: str
    label: str
    compute: Callable[[Any], float] | None = None
    source: Source = "genes"
    direction: Direction = "higher"
    headline: bool = True
    compare: int | None = None
    plot: int | None = None
    axis: str = ""
    fmt: str = ".3f"

    @property
    def ascending(self) -> bool:
        """Sort ascending to put the best first (a lower-is-better figure)."""
        return self.direction == "lower"


_METRICS: dict[str, Metric] = {}
#: The entry-point group other packages name their metric modules in.
ENTRY_POINTS = "brstnet.metrics"


def _registered() -> dict[str, Metric]:
    """Every metric, those of other packages' entry points included (loaded once)."""
    load_plugins(ENTRY_POINTS)
    return _METRICS


def register_metric(
    name: str,
    label: str,
    compute: Callable[[Any], float] | None = None,
    **settings: Any,
) -> Metric:
    """Declare a metric (the other fields of :class:`Metric` as keywords).

    Returns:
        The metric; its ``name`` is what other modules use instead of the string.

    Raises:
        ValueError: the name is taken, the source unknown, or a figure other than a
            ``run`` one has no ``compute``.
    """
    metric = Metric(name, label, compute, **settings)
    if name in _METRICS:
        raise ValueError(f"metric {name!r} is already registered")
    if metric.source not in SOURCES:
        raise ValueError(f"metric {name!r}: source {metric.source!r} is not one of {SOURCES}")
    if metric.compute is None and metric.source != "run":
        raise ValueError(f"metric {name!r}: a {metric.source} figure needs a compute function")
    _METRICS[name] = metric
    return metric


def unregister_metric(name: str) -> Metric:
    """Remove a metric (tests, plugins replacing one); returns it."""
    metric = get_metric(name)
    del _METRICS[name]
    return metric


def get_metric(name: str) -> Metric:
    """The metric named ``name`` (ValueError naming the registered ones otherwise)."""
    return lookup(_registered(), name, "metric")


def registered_metrics(*sources: Source) -> tuple[Metric, ...]:
    """The metrics of ``sources`` (all without), in registration order."""
    return tuple(m for m in _registered().values() if not sources or m.source in sources)


def summary_metrics() -> tuple[Metric, ...]:
    """The columns of the evaluation summary after the variant and its targets: every
    ``genes`` and ``spots`` figure, in registration order."""
    return registered_metrics("genes", "spots")


def headline_metrics() -> tuple[Metric, ...]:
    """The summary figures the ``kedro run``'s own run carries for its best variant."""
    return tuple(m for m in summary_metrics() if m.headline)


def compared_metrics() -> tuple[Metric, ...]:
    """The MLflow runs table's comparison columns, in their order."""
    return tuple(sorted((m for m in _registered().values() if m.compare is not None), key=_compare))


def plotted_metrics() -> tuple[Metric, ...]:
    """The summary plot's panels, in their order."""
    return tuple(sorted((m for m in _registered().values() if m.plot is not None), key=_plot))


def _compare(metric: Metric) -> int:
    return metric.compare or 0


def _plot(metric: Metric) -> int:
    return metric.plot or 0


class MetricNames(Sequence[str]):
    """The names of a selection of metrics, read from the registry at each use (a metric
    registered later is in it): ``before``, the selected metrics' names, ``after``.

    Args:
        select: The selection (e.g. :func:`summary_metrics`).
        before: Fixed names before them (e.g. the summary's ``variant`` column).
        after: Fixed names after them.
    """

    def __init__(
        self,
        select: Callable[[], tuple[Metric, ...]],
        *,
        before: tuple[str, ...] = (),
        after: tuple[str, ...] = (),
    ) -> None:
        self.select, self.before, self.after = select, before, after

    def _names(self) -> tuple[str, ...]:
        return (*self.before, *(m.name for m in self.select()), *self.after)

    def __getitem__(self, index):  # noqa: ANN001, ANN204 (int or slice, as tuple's)
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) else other)

    def __hash__(self) -> int:
        return hash(self._names())

    def __repr__(self) -> str:
        return repr(self._names())
