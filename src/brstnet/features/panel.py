"""Gene panels fitted on training spots only (BrST-Net's filters, or scanpy's HVGs)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from .splits import fold_sections

logger = logging.getLogger(__name__)

PANEL_COLUMNS = ["fold", "gene", "set", "rank", "mean_count", "detection"]
ALL_PATIENTS = -1  # ``fold`` of the leaky all-patient panel, kept for reference only


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


def panel_genes(gene_panels: pd.DataFrame, fold: int, which: str) -> list[str]:
    """Genes of one fold's ``main`` or ``aux`` set, in rank order.

    Args:
        gene_panels: The ``gene_panels`` table (fold, gene, set, rank, ...).
        fold: Outer fold number (``-1``: the all-patient panel).
        which: ``main`` or ``aux``.

    Returns:
        Gene symbols, by ascending rank (empty when the set is empty).
    """
    part = gene_panels[(gene_panels["fold"] == fold) & (gene_panels["set"] == which)]
    return list(part.sort_values("rank")["gene"])


def fold_panels(
    sections: Mapping[str, ad.AnnData],
    splits: pd.DataFrame,
    *,
    n_genes: int = 250,
    min_detection: float = 0.10,
    aux_max_genes: int | None = None,
    method: str = "top_mean",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per outer fold, the panel chosen on its training sections only, and what the
    usual all-patient protocol would have leaked.

    Args:
        sections: Section name -> AnnData of raw counts [n_spots, n_genes] with
            ``uns["patient"]``; the all-patient panel concatenates them in this order.
        splits: The split table of :func:`brstnet.features.splits.make_splits`.
        n_genes: As in :func:`select_panel`.
        min_detection: As in :func:`select_panel`.
        aux_max_genes: As in :func:`select_panel`.
        method: As in :func:`select_panel`.

    Returns:
        ``gene_panels``: one row per (fold, selected gene) with columns fold, gene, set,
        rank, mean_count, detection; the folds in order, then the all-patient panel as
        fold ``-1`` (for reference only). ``panel_leakage_report``: one row per fold with
        test_patients, training_spots, main_genes, aux_genes,
        main_genes_not_in_all_patient_panel and up to five examples each way.
    """
    kwargs = {
        "n_genes": n_genes,
        "min_detection": min_detection,
        "aux_max_genes": aux_max_genes,
        "method": method,
    }
    everyone = select_panel(align_genes(list(sections.values())), **kwargs)
    all_main = set(everyone.loc[everyone["set"] == "main", "gene"])
    panels, report = [], []
    for fold in sorted(splits["fold"].unique()):
        train = align_genes([sections[s] for s in fold_sections(splits, fold, "train")])
        panel = select_panel(train, **kwargs).assign(fold=fold)
        main = set(panel.loc[panel["set"] == "main", "gene"])
        differ = len(main - all_main)
        test_patients = {sections[s].uns["patient"] for s in fold_sections(splits, fold, "test")}
        report.append(
            {
                "fold": fold,
                "test_patients": ",".join(sorted(test_patients)),
                "training_spots": train.n_obs,
                "main_genes": len(main),
                "aux_genes": int((panel["set"] == "aux").sum()),
                "main_genes_not_in_all_patient_panel": differ,
                "examples_only_in_fold_panel": ",".join(sorted(main - all_main)[:5]),
                "examples_only_in_all_patient_panel": ",".join(sorted(all_main - main)[:5]),
            }
        )
        logger.info(
            "fold %d: %d main + %d aux genes from %d training spots; %d of the main genes differ from the all-patient panel",
            fold,
            len(main),
            report[-1]["aux_genes"],
            train.n_obs,
            differ,
        )
        panels.append(panel)
    everyone = everyone.assign(fold=ALL_PATIENTS)
    gene_panels = pd.concat([*panels, everyone], ignore_index=True)[PANEL_COLUMNS]
    return gene_panels, pd.DataFrame(report)
