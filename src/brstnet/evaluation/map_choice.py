"""Which held-out section and genes a variant's gene maps show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from brstnet.metrics.per_gene import MEDIAN_R

if TYPE_CHECKING:
    import anndata as ad


@dataclass(frozen=True)
class MapChoice:
    """What a variant's gene maps show.

    Attributes:
        section: The held-out section with the most predicted spots.
        fold: Position in the predictions of the fold that holds it out.
        genes: The genes drawn, all in that fold's panel.
    """

    section: str
    fold: int
    genes: list[str]


def choose_maps(
    per_gene: pd.DataFrame,
    predictions: Sequence[ad.AnnData],
    *,
    n_best_genes: int,
    map_genes: Sequence[str],
) -> MapChoice:
    """The largest held-out section, and the genes to draw on it.

    Genes: the ``n_best_genes`` of the highest finite median r, then the ``map_genes``
    not already among them; only genes the section's fold model predicts (its own
    panel); the panel's first gene when none is left.

    Args:
        per_gene: The per-gene table of :func:`~brstnet.evaluation.summary.evaluate_predictions` (``gene``,
            ``median_r``).
        predictions: One predictions AnnData per fold (obs ``section``).
        n_best_genes: How many of the best genes to draw.
        map_genes: Genes always drawn when in the panel.
    """
    spots = pd.concat([p.obs.assign(_fold=i) for i, p in enumerate(predictions)])
    section = spots["section"].value_counts().index[0]
    fold = int(spots.loc[spots["section"] == section, "_fold"].iloc[0])
    names = [str(g) for g in predictions[fold].var_names]
    panel = set(names)
    ranked = [
        g
        for g in per_gene.dropna(subset=[MEDIAN_R]).sort_values(MEDIAN_R, ascending=False)["gene"]
        if g in panel
    ]
    best = ranked[:n_best_genes]
    genes = best + [g for g in map_genes if g in panel and g not in best]
    return MapChoice(section=section, fold=fold, genes=genes or names[:1])
