"""Nodes of the feature_selection pipeline: everything fitted per fold on training patients.

Thin adapters over :mod:`brstnet.features` (panel, targets, model_inputs): parse the
parameters, load the partitioned inputs, call one library function.
"""

from __future__ import annotations

import logging
from typing import Any

# resolvable at run time: Kedro evaluates the nodes' type hints
import anndata as ad
import pandas as pd

from brstnet.config import FeatureSelectionParams
from brstnet.features import model_inputs, panel, targets
from brstnet.features.splits import OUTER, make_splits
from brstnet.st.errors import DataError
from brstnet.st.patches import PatchStore

from ..nodes_common import materialise, parse
from ..variants import n_folds

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
    cfg = parse(FeatureSelectionParams, params).split
    data = materialise(sections)
    info = [
        {
            "dataset": a.uns.get("dataset", "unknown"),
            "patient": a.uns["patient"],
            "section": name,
            "subtype": a.uns.get("subtype"),
        }
        for name, a in data.items()
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
        patients = {s: a.uns["patient"] for s, a in data.items()}
        raise DataError(
            f"the data give {splits['fold'].nunique()} outer folds but {registered} were "
            f"registered from the configuration (sections -> patients: {patients}). If "
            "data_processing.sections changed since the sections were written, rerun "
            "data_processing; if the patients are only in the data's metadata (HEST), list "
            "them in data_processing.reader.patients so that the folds are known before the run"
        )
    for fold, part in splits[splits["inner_fold"] == OUTER].groupby("fold"):
        test = sorted(part.loc[part["role"] == "test", "patient"].unique())
        train = sorted(part.loc[part["role"] == "train", "patient"].unique())
        logger.info("fold %d: test patients %s, training patients %s", fold, test, train)
    return splits


def select_gene_panels(
    sections: dict, splits: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per fold, the main panel and auxiliary genes from training patients only.

    Returns:
        ``gene_panels`` (fold, gene, set, rank, mean_count, detection; fold -1 is the
        all-patient panel) and ``panel_leakage_report``: per fold, how many main-panel
        genes differ from the panel chosen on all patients (what the usual protocol leaks).
        See :func:`brstnet.features.panel.fold_panels`.
    """
    cfg = parse(FeatureSelectionParams, params).panel
    return panel.fold_panels(
        materialise(sections),
        splits,
        n_genes=cfg.n_genes,
        min_detection=cfg.min_detection,
        aux_max_genes=cfg.aux_max_genes,
        method=cfg.method,
    )


def fit_target_statistics(
    sections: dict, splits: pd.DataFrame, gene_panels: pd.DataFrame, params: dict[str, Any]
) -> pd.DataFrame:
    """Per fold and gene, mean and std of the transformed training values (``target_statistics``).

    See :func:`brstnet.features.targets.target_statistics`.
    """
    cfg = parse(FeatureSelectionParams, params).targets
    return targets.target_statistics(
        materialise(sections),
        splits,
        gene_panels,
        transform=cfg.transform,
        zscore=cfg.zscore,
        smoothing=cfg.smoothing,
    )


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
    See :func:`brstnet.features.model_inputs.build_fold_input`.
    """
    cfg = parse(FeatureSelectionParams, params).targets
    return model_inputs.build_model_inputs(
        materialise(sections),
        splits,
        gene_panels,
        target_statistics,
        patch_store.index,
        transform=cfg.transform,
        zscore=cfg.zscore,
        smoothing=cfg.smoothing,
    )
