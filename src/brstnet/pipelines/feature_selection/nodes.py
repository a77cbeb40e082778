"""Nodes of the feature_selection pipeline: everything fitted per fold on training patients."""

from __future__ import annotations

import logging
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from brstnet.config import FeatureSelectionParams
from brstnet.features.panel import align_genes, select_panel
from brstnet.features.splits import OUTER, make_splits
from brstnet.features.targets import apply_zscore, fit_zscore, transform_counts
from brstnet.st.patches import PatchStore

from ..nodes_common import materialise, parse

logger = logging.getLogger(__name__)


def split_patients(
    sections: dict, params: dict[str, Any], data_processing: dict[str, Any]
) -> pd.DataFrame:
    """Outer and inner splits by patient (``splits``, 05_model_input).

    Raises:
        DataError: the data give another number of folds than the registered namespaces
            (counted from the configuration before the run), e.g. HEST sections whose
            metadata name one patient; the message says what to configure.
    """
    from brstnet.pipelines.variants import n_folds
    from brstnet.st.errors import DataError

    cfg = parse(FeatureSelectionParams, params).split
    info = [
        {
            "dataset": a.uns.get("dataset", "unknown"),
            "patient": a.uns["patient"],
            "section": name,
            "subtype": a.uns.get("subtype"),
        }
        for name, a in materialise(sections).items()
    ]
    splits = make_splits(
        pd.DataFrame(info),
        scheme=cfg.scheme,
        k=cfg.k,
        test_patients=cfg.test_patients,
        inner_scheme=cfg.inner.scheme,
        inner_k=cfg.inner.k,
        val_fraction=cfg.inner.val_fraction,
        seed=cfg.seed,
        stratify=cfg.stratify,
    )
    registered = n_folds(data_processing, params)
    if splits["fold"].nunique() != registered:
        patients = {s: a.uns["patient"] for s, a in materialise(sections).items()}
        raise DataError(
            f"the data give {splits['fold'].nunique()} outer folds but {registered} were "
            f"registered from the configuration (sections -> patients: {patients}); list the "
            "patients in data_processing.reader.patients so that the folds are known before the run"
        )
    for fold, part in splits[splits["inner_fold"] == OUTER].groupby("fold"):
        test = sorted(part.loc[part["role"] == "test", "patient"].unique())
        train = sorted(part.loc[part["role"] == "train", "patient"].unique())
        logger.info("fold %d: test patients %s, training patients %s", fold, test, train)
    return splits


def _fold_sections(splits: pd.DataFrame, fold: int, role: str) -> list[str]:
    part = splits[
        (splits["fold"] == fold) & (splits["inner_fold"] == OUTER) & (splits["role"] == role)
    ]
    return sorted(part["section"])


def select_gene_panels(
    sections: dict, splits: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per fold, the main panel and auxiliary genes from training patients only.

    Returns:
        ``gene_panels`` (fold, gene, set, rank, mean_count, detection) and
        ``panel_leakage_report``: per fold, how many main-panel genes differ from the
        panel chosen on all patients (what the usual protocol leaks).
    """
    cfg = parse(FeatureSelectionParams, params).panel
    data = materialise(sections)
    kwargs = {
        "n_genes": cfg.n_genes,
        "min_detection": cfg.min_detection,
        "aux_max_genes": cfg.aux_max_genes,
        "method": cfg.method,
    }
    everyone = select_panel(align_genes(list(data.values())), **kwargs)
    all_main = set(everyone.loc[everyone["set"] == "main", "gene"])
    panels, report = [], []
    for fold in sorted(splits["fold"].unique()):
        train = align_genes([data[s] for s in _fold_sections(splits, fold, "train")])
        panel = select_panel(train, **kwargs).assign(fold=fold)
        main = set(panel.loc[panel["set"] == "main", "gene"])
        differ = len(main - all_main)
        report.append(
            {
                "fold": fold,
                "test_patients": ",".join(
                    sorted({data[s].uns["patient"] for s in _fold_sections(splits, fold, "test")})
                ),
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
    everyone = everyone.assign(fold=-1)  # the leaky all-patient panel, kept for reference only
    columns = ["fold", "gene", "set", "rank", "mean_count", "detection"]
    return pd.concat([*panels, everyone], ignore_index=True)[columns], pd.DataFrame(report)


def _panel(gene_panels: pd.DataFrame, fold: int, which: str) -> list[str]:
    part = gene_panels[(gene_panels["fold"] == fold) & (gene_panels["set"] == which)]
    return list(part.sort_values("rank")["gene"])


def fit_target_statistics(
    sections: dict, splits: pd.DataFrame, gene_panels: pd.DataFrame, params: dict[str, Any]
) -> pd.DataFrame:
    """Per fold and gene, mean and std of the transformed training values (``target_statistics``)."""
    cfg = parse(FeatureSelectionParams, params).targets
    data = materialise(sections)
    rows = []
    for fold in sorted(f for f in splits["fold"].unique()):
        train = align_genes([data[s] for s in _fold_sections(splits, fold, "train")])
        for which in ("main", "aux"):
            genes = _panel(gene_panels, fold, which)
            if not genes:
                continue
            values = transform_counts(train, genes, cfg.transform)
            stats = (
                fit_zscore(values, genes)
                if cfg.zscore
                else pd.DataFrame({"gene": genes, "mean": 0.0, "std": 1.0})
            )
            rows.append(
                stats.assign(fold=fold, set=which, transform=cfg.transform, zscore=cfg.zscore)
            )
    return pd.concat(rows, ignore_index=True)[
        ["fold", "set", "gene", "mean", "std", "transform", "zscore"]
    ]


def build_model_inputs(
    sections: dict,
    splits: pd.DataFrame,
    gene_panels: pd.DataFrame,
    target_statistics: pd.DataFrame,
    patch_store: PatchStore,
    params: dict[str, Any],
) -> dict[str, ad.AnnData]:
    """One AnnData per fold: every spot of the fold with its targets (``model_inputs``).

    X = main-panel targets [n_spots, n_main] float32; obsm["aux"] = auxiliary targets;
    layers["counts"] = raw counts of the main panel; obs = section, patient, role
    (train / test), passes_tissue, patch_row; var = main genes with their statistics.
    """
    cfg = parse(FeatureSelectionParams, params).targets
    data = materialise(sections)
    out = {}
    for fold in sorted(splits["fold"].unique()):
        train, test = _fold_sections(splits, fold, "train"), _fold_sections(splits, fold, "test")
        # the union over train + test holds every gene chosen on train
        combined = align_genes([data[s] for s in train + test])
        stats = target_statistics[target_statistics["fold"] == fold]
        targets = {}
        for which in ("main", "aux"):
            genes = _panel(gene_panels, fold, which)
            values = transform_counts(combined, genes, cfg.transform)
            targets[which] = apply_zscore(
                values, stats[stats["set"] == which].set_index("gene").loc[genes]
            )
        main_genes, aux_genes = _panel(gene_panels, fold, "main"), _panel(gene_panels, fold, "aux")
        index = patch_store.index.reindex(combined.obs_names)
        section = combined.obs["section"].astype(str)
        obs = pd.DataFrame(
            {
                "section": section.to_numpy(),
                "patient": combined.obs["patient"].astype(str).to_numpy(),
                "role": np.where(section.isin(test), "test", "train"),
                "passes_tissue": index["passes_tissue"].fillna(False).astype(bool).to_numpy(),
                "patch_row": index["row"].fillna(-1).astype(int).to_numpy(),
                "total_counts": combined.obs["total_counts"].to_numpy(),
            },
            index=combined.obs_names,
        )
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
            transform=cfg.transform,
            zscore=cfg.zscore,
        )
        out[f"fold_{fold}"] = fold_input
        logger.info(
            "fold %d: %d spots (%d train, %d test), %d main targets, %d aux targets",
            fold,
            fold_input.n_obs,
            int((obs["role"] == "train").sum()),
            int((obs["role"] == "test").sum()),
            len(main_genes),
            len(aux_genes),
        )
    return out
