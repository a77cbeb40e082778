"""Regression targets: transforms of raw counts and per-gene z-scores from training spots."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from ..registry import unknown_name
from ..st.neighbours import spot_neighbours
from .panel import align_genes, panel_genes
from .splits import fold_sections

logger = logging.getLogger(__name__)

TRANSFORMS = ("log1p", "stnet", "library")
STAT_COLUMNS = ["fold", "set", "gene", "mean", "std", "transform", "zscore"]


def transform_counts(adata: ad.AnnData, genes: list[str], method: str) -> np.ndarray:
    """Transformed expression of ``genes`` at every spot of ``adata``.

    - ``log1p`` (BrST-Net): log(1 + count).
    - ``stnet`` (ST-Net): log((1 + count) / (n_genes + total_count)), n_genes = all genes
      of ``adata``, total_count = the spot's reads over all genes.
    - ``library`` (scanpy, the field's targets: TRIPLEX, DKAN, BLEEP): normalize_total to
      10,000 reads a spot over all genes of ``adata``, then log1p.

    Returns:
        [n_spots, len(genes)] float32.
    """
    if method not in TRANSFORMS:
        raise ValueError(unknown_name(method, TRANSFORMS, "target transform"))
    if not genes:
        return np.zeros((adata.n_obs, 0), np.float32)
    if method == "library":
        import scanpy as sc  # slow to import: only when asked for

        norm = adata.copy()
        norm.X = norm.X.astype(np.float32)
        sc.pp.normalize_total(norm, target_sum=LIBRARY_SIZE)
        sc.pp.log1p(norm)
        return _dense(norm[:, genes].X).astype(np.float32)
    counts = _dense(adata[:, genes].X).astype(np.float64)
    if method == "log1p":
        return np.log1p(counts).astype(np.float32)
    total = np.asarray(adata.X.sum(axis=1), dtype=np.float64).reshape(-1, 1)
    return np.log((1.0 + counts) / (adata.n_vars + total)).astype(np.float32)


#: The library-size normalisation of ``library`` targets: reads per 10,000 (scanpy's
#: ``normalize_total(target_sum=1e4)``, as TRIPLEX, DKAN and BLEEP), then log(1 + x).
LIBRARY_SIZE = 1e4


def log_depth(total_counts: np.ndarray) -> np.ndarray:
    """Each spot's read depth as the depth head predicts it: log(total counts), >= 0."""
    return np.log(np.maximum(np.asarray(total_counts, dtype=np.float64), 1.0))


def predicted_log_depth(config: dict, depth_z: np.ndarray) -> np.ndarray | None:
    """The depth head's z-scored output -> log read depth, with the training statistics a
    model bundle's ``config.json`` carries (``target.depth_mean`` / ``depth_std``).

    Returns:
        [n] float64, or None for a model without a depth head (NaN outputs) or no spots.
    """
    depth_z = np.asarray(depth_z, dtype=np.float64)
    if len(depth_z) == 0 or not np.isfinite(depth_z).all():
        return None
    target = config["target"]
    return depth_z * target.get("depth_std", 1.0) + target.get("depth_mean", 0.0)


def convert_scale(
    values: np.ndarray, depth: np.ndarray, source: str, target: str
) -> np.ndarray | None:
    """Expression on one target scale -> another, given each spot's log read depth.

    A ``library`` prediction is a composition (reads per 10,000); with the spot's depth
    it gives counts on the training scale: count = expm1(value) x exp(depth) / 10,000,
    and back. Only ``log1p`` <-> ``library`` (and each to itself) convert; ``stnet``
    needs the number of genes of the count table and is not converted.

    Args:
        values: [n_spots, n_genes] on the ``source`` scale (z-score already inverted).
        depth: [n_spots] log total counts (observed or predicted by the depth head).
        source: The values' scale, ``log1p`` or ``library``.
        target: The scale to convert to, ``log1p`` or ``library``.

    Returns:
        [n_spots, n_genes] float32 on the ``target`` scale, or None when the pair does
        not convert.
    """
    values = np.asarray(values, dtype=np.float64)
    if source == target:
        return values.astype(np.float32)
    if {source, target} != {"log1p", "library"}:
        return None
    depth = np.asarray(depth, dtype=np.float64)[:, None]
    counts = np.expm1(np.maximum(values, 0.0))  # a negative log1p value means no reads
    if source == "library":
        return np.log1p(counts * np.exp(depth) / LIBRARY_SIZE).astype(np.float32)
    return np.log1p(counts * LIBRARY_SIZE / np.exp(depth)).astype(np.float32)


#: ``targets.smoothing`` values: none, or TRIPLEX / DKAN's mean over the 3 x 3 spots.
Smoothing = Literal["none", "neighbours"]


def smooth_targets(values: np.ndarray, adata: ad.AnnData) -> np.ndarray:
    """Each spot's values averaged with its grid neighbours' (TRIPLEX and DKAN's 3 x 3
    smoothing of targets; 6 neighbours on a Visium grid), within its own section.

    Args:
        values: [n_spots, n_genes] transformed values of the spots of ``adata``.
        adata: Spots with obs ``section`` and obsm ``spatial`` (pixel centres).

    Returns:
        [n_spots, n_genes] float32: the mean over the spot and its neighbours.
    """
    neighbours = spot_neighbours(
        np.asarray(adata.obsm["spatial"], dtype=float), adata.obs["section"].astype(str).to_numpy()
    )
    members = np.c_[np.arange(len(values)), neighbours]  # the spot itself first
    present = members >= 0
    gathered = np.asarray(values, dtype=np.float64)[np.maximum(members, 0)]  # [n, 1 + K, g]
    total = (gathered * present[..., None]).sum(axis=1)
    return (total / present.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_zscore(values: np.ndarray, genes: list[str]) -> pd.DataFrame:
    """Per-gene mean and standard deviation (ddof 0) of training values.

    A gene constant on the training spots gets std 1 (its z-score is then 0 there),
    with a warning naming it.
    """
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64)
    constant = std == 0
    if constant.any():
        logger.warning(
            "%d genes are constant on the training spots; their std is set to 1: %s",
            int(constant.sum()),
            ", ".join(np.asarray(genes)[constant][:10]),
        )
        std = np.where(constant, 1.0, std)
    return pd.DataFrame({"gene": genes, "mean": mean, "std": std})


def apply_zscore(values: np.ndarray, stats: pd.DataFrame) -> np.ndarray:
    """(values - mean) / std with saved statistics (rows in the order of the columns)."""
    return ((values - stats["mean"].to_numpy()) / stats["std"].to_numpy()).astype(np.float32)


def invert_zscore(values: np.ndarray, stats: pd.DataFrame) -> np.ndarray:
    """Back from z-scores to the transformed scale."""
    return (values * stats["std"].to_numpy() + stats["mean"].to_numpy()).astype(np.float32)


def target_statistics(
    sections: Mapping[str, ad.AnnData],
    splits: pd.DataFrame,
    gene_panels: pd.DataFrame,
    *,
    transform: str = "log1p",
    zscore: bool = True,
    smoothing: str = "none",
) -> pd.DataFrame:
    """Per outer fold, set and gene: mean and std of the transformed training values.

    Args:
        sections: Section name -> AnnData of raw counts [n_spots, n_genes].
        splits: The split table; each fold's statistics use its ``train`` sections only.
        gene_panels: The ``gene_panels`` table of :func:`brstnet.features.panel.fold_panels`.
        transform: One of :data:`TRANSFORMS` (see :func:`transform_counts`).
        zscore: False: mean 0 and std 1 for every gene (targets left untouched).
        smoothing: ``neighbours``: the values smoothed over each spot's grid neighbours
            first (:func:`smooth_targets`).

    Returns:
        One row per (fold, set, gene), genes in rank order, with columns fold, set, gene,
        mean, std (ddof 0; 1 for a constant gene), transform, zscore. A fold's empty set
        has no rows.
    """
    rows = []
    for fold in sorted(splits["fold"].unique()):
        train = align_genes([sections[s] for s in fold_sections(splits, fold, "train")])
        for which in ("main", "aux"):
            genes = panel_genes(gene_panels, fold, which)
            if not genes:
                continue
            values = transform_counts(train, genes, transform)
            if smoothing == "neighbours":
                values = smooth_targets(values, train)
            stats = (
                fit_zscore(values, genes)
                if zscore
                else pd.DataFrame({"gene": genes, "mean": 0.0, "std": 1.0})
            )
            rows.append(stats.assign(fold=fold, set=which, transform=transform, zscore=zscore))
    return pd.concat(rows, ignore_index=True)[STAT_COLUMNS]


def _dense(x) -> np.ndarray:
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)
