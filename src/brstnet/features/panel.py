"""Gene panels fitted on training spots only (BrST-Net's filters, or scanpy's HVGs)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def align_genes(sections: Sequence[ad.AnnData]) -> ad.AnnData:
    """Concatenate sections on the union of gene symbols; a gene absent from a section is 0 there."""
    gene_sets = [set(a.var_names) for a in sections]
    union = set().union(*gene_sets)
    shared = set.intersection(*gene_sets)
    combined = ad.concat(list(sections), join="outer", fill_value=0, merge="same")
    combined.X = combined.X.astype(np.int32)
    if len(union) > len(shared):
        logger.info(
            "genes aligned by symbol over %d sections: %d in all, %d in some only (counted as 0 where absent), %d in total",
            len(sections),
            len(shared),
            len(union) - len(shared),
            len(union),
        )
    return combined


def gene_statistics(adata: ad.AnnData) -> pd.DataFrame:
    """Per gene: mean raw count and detection rate (fraction of spots with count > 0)."""
    counts = adata.X
    mean = np.asarray(counts.mean(axis=0)).ravel()
    detection = np.asarray((counts > 0).mean(axis=0)).ravel()
    return pd.DataFrame({"mean_count": mean, "detection": detection}, index=adata.var_names.copy())


def select_panel(
    adata: ad.AnnData,
    *,
    n_genes: int = 250,
    min_detection: float = 0.10,
    aux_max_genes: int | None = None,
    method: str = "top_mean",
) -> pd.DataFrame:
    """Choose the main panel and the auxiliary genes from the spots given.

    BrST-Net: keep genes detected (> 0) in at least ``min_detection`` of spots; the
    main panel is the ``n_genes`` with the highest mean count (ties broken by symbol);
    the auxiliary set is every other kept gene (the top ``aux_max_genes`` by mean if
    capped). ``method="hvg"`` takes the main panel from scanpy's highly variable genes
    among the kept ones instead.

    Returns:
        One row per selected gene: gene, set ("main" / "aux"), rank (within its set),
        mean_count, detection.
    """
    stats = gene_statistics(adata)
    kept = stats[stats["detection"] >= min_detection]
    order = kept.assign(gene=kept.index).sort_values(
        ["mean_count", "gene"], ascending=[False, True]
    )
    if len(order) < n_genes:
        raise ValueError(
            f"only {len(order)} genes are detected in >= {min_detection:.0%} of {adata.n_obs} training spots; "
            f"lower feature_selection.panel.n_genes ({n_genes}) or min_detection"
        )
    if method == "top_mean":
        main = list(order.index[:n_genes])
    elif method == "hvg":
        import scanpy as sc  # slow to import: only when asked for

        sub = adata[:, order.index].copy()
        sc.pp.normalize_total(sub, target_sum=1e4)
        sc.pp.log1p(sub)
        sc.pp.highly_variable_genes(sub, n_top_genes=n_genes, flavor="seurat")
        hvg = sub.var.loc[sub.var["highly_variable"]].sort_values(
            "dispersions_norm", ascending=False
        )
        main = list(hvg.index[:n_genes])
    else:
        raise ValueError(f"unknown panel method {method!r}; use top_mean or hvg")
    chosen = set(main)
    aux = [g for g in order.index if g not in chosen]
    if aux_max_genes is not None:
        aux = aux[:aux_max_genes]
    rows = [(g, "main", i) for i, g in enumerate(main)] + [(g, "aux", i) for i, g in enumerate(aux)]
    out = pd.DataFrame(rows, columns=["gene", "set", "rank"])
    out["mean_count"] = stats.loc[out["gene"], "mean_count"].to_numpy()
    out["detection"] = stats.loc[out["gene"], "detection"].to_numpy()
    return out
