"""Per-fold model inputs: every spot of a fold with its targets, role and patch row."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

from .panel import align_genes, panel_genes
from .splits import fold_sections
from .targets import apply_zscore, log_depth, smooth_targets, transform_counts

logger = logging.getLogger(__name__)


def build_fold_input(
    sections: Mapping[str, ad.AnnData],
    splits: pd.DataFrame,
    gene_panels: pd.DataFrame,
    target_statistics: pd.DataFrame,
    patch_index: pd.DataFrame,
    fold: int,
    *,
    transform: str = "log1p",
    zscore: bool = True,
    smoothing: str = "none",
) -> ad.AnnData:
    """One fold's AnnData: its training then test spots with their targets.

    Args:
        sections: Section name -> AnnData of raw counts [n_spots, n_genes] with obs
            section, patient, total_counts and obsm["spatial"].
        splits: The split table; the outer split gives each spot's role.
        gene_panels: The ``gene_panels`` table (main and aux genes of the fold).
        target_statistics: The ``target_statistics`` table (mean and std per gene).
        patch_index: The patch store's index, indexed by obs_name, with columns ``row``
            and ``passes_tissue``; a spot absent from it gets patch_row -1 and
            passes_tissue False.
        fold: Outer fold number.
        transform: Applied to the counts; recorded in ``uns``.
        zscore: Whether the targets are z-scored with ``target_statistics`` as saved;
            recorded in ``uns``.
        smoothing: ``neighbours``: targets (training and test alike, each spot with its
            own section's neighbours) are smoothed over the grid's 3 x 3 spots, as TRIPLEX
            and DKAN do; recorded in ``uns`` and in every table's ``targets`` label. The
            layers of raw counts stay unsmoothed: the evaluation's library-normalised and
            log1p figures read the measured values.

    Returns:
        AnnData [n_spots, n_main]: X = main-panel targets float32; layers["counts"] =
        raw counts of the main panel float32; obsm["aux"] = auxiliary targets
        [n_spots, n_aux] float32; obsm["spatial"] = [n_spots, 2] float; obs = section,
        patient, role (train / test), passes_tissue, patch_row, total_counts; var =
        main genes with target_mean and target_std; uns = fold, aux_genes, transform,
        zscore, depth_mean, depth_std. obs also holds ``log_depth`` (log total counts) and
        ``depth_target``: the depth head's target, log depth z-scored with the mean and std
        (ddof 0) of the fold's training spots.
    """
    train, test = fold_sections(splits, fold, "train"), fold_sections(splits, fold, "test")
    # the union over train + test holds every gene chosen on train
    combined = align_genes([sections[s] for s in train + test])
    stats = target_statistics[target_statistics["fold"] == fold]
    targets = {}
    for which in ("main", "aux"):
        genes = panel_genes(gene_panels, fold, which)
        values = transform_counts(combined, genes, transform)
        if smoothing == "neighbours":
            values = smooth_targets(values, combined)
        targets[which] = apply_zscore(
            values, stats[stats["set"] == which].set_index("gene").loc[genes]
        )
    main_genes = panel_genes(gene_panels, fold, "main")
    aux_genes = panel_genes(gene_panels, fold, "aux")
    index = patch_index.reindex(combined.obs_names)
    section = combined.obs["section"].astype(str)
    obs = pd.DataFrame(
        {
            "section": section.to_numpy(),
            "patient": combined.obs["patient"].astype(str).to_numpy(),
            "role": np.where(section.isin(test), "test", "train"),
            "passes_tissue": index["passes_tissue"].eq(True).to_numpy(),  # no patch: False
            "patch_row": index["row"].fillna(-1).astype(int).to_numpy(),
            "total_counts": combined.obs["total_counts"].to_numpy(),
        },
        index=combined.obs_names,
    )
    depth = log_depth(obs["total_counts"].to_numpy())
    train_depth = depth[(obs["role"] == "train").to_numpy()]
    depth_mean = float(train_depth.mean()) if len(train_depth) else 0.0
    depth_std = float(train_depth.std()) if len(train_depth) else 1.0
    depth_std = depth_std if depth_std > 0 else 1.0
    obs["log_depth"] = depth
    obs["depth_target"] = ((depth - depth_mean) / depth_std).astype(np.float32)
    main_stats = stats[stats["set"] == "main"].set_index("gene").loc[main_genes]
    var = pd.DataFrame(
        {
            "target_mean": main_stats["mean"].to_numpy(),
            "target_std": main_stats["std"].to_numpy(),
        },
        index=main_genes,
    )
    fold_input = ad.AnnData(X=targets["main"], obs=obs, var=var)
    fold_input.layers["counts"] = combined[:, main_genes].X.toarray().astype(np.float32)
    fold_input.obsm["aux"] = targets["aux"]
    fold_input.obsm["spatial"] = np.asarray(combined.obsm["spatial"], dtype=float)
    fold_input.uns.update(
        fold=int(fold),
        aux_genes=np.asarray(aux_genes, dtype=str),
        transform=transform,
        zscore=zscore,
        depth_mean=depth_mean,
        depth_std=depth_std,
        smoothing=smoothing,
    )
    logger.info(
        "fold %d: %d spots (%d train, %d test), %d main targets, %d aux targets",
        fold,
        fold_input.n_obs,
        int((obs["role"] == "train").sum()),
        int((obs["role"] == "test").sum()),
        len(main_genes),
        len(aux_genes),
    )
    return fold_input


def build_model_inputs(
    sections: Mapping[str, ad.AnnData],
    splits: pd.DataFrame,
    gene_panels: pd.DataFrame,
    target_statistics: pd.DataFrame,
    patch_index: pd.DataFrame,
    *,
    transform: str = "log1p",
    zscore: bool = True,
    smoothing: str = "none",
) -> dict[str, ad.AnnData]:
    """:func:`build_fold_input` for every outer fold of ``splits``.

    Returns:
        ``fold_<k>`` -> that fold's AnnData, folds in ascending order.
    """
    return {
        f"fold_{fold}": build_fold_input(
            sections,
            splits,
            gene_panels,
            target_statistics,
            patch_index,
            fold,
            transform=transform,
            zscore=zscore,
            smoothing=smoothing,
        )
        for fold in sorted(splits["fold"].unique())
    }
