"""The training node: a thin adapter over :func:`brstnet.training.folds.train_fold`.

torch and timm are imported inside the node, so that listing pipelines stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from brstnet.config import TrainingParams

from ..nodes_common import load_fold, parse

if TYPE_CHECKING:
    from brstnet.st.patches import PatchStore
    from brstnet.training.bundle import ModelBundle


def train_fold(
    model_inputs: dict,
    splits: pd.DataFrame,
    patch_store: PatchStore,
    training: dict[str, Any],
    *,
    variant_name: str,
    backbone: str,
    aux_weight: float,
    fold: int,
) -> tuple[ModelBundle, pd.DataFrame]:
    """Train one variant on one fold (see :mod:`brstnet.training.folds`).

    Returns:
        ``<variant>_fold<k>.model`` (weights, model spec, patch geometry, panel, target
        statistics) and ``<variant>_fold<k>.training_history`` (one row per stage and epoch).
    """
    from brstnet.training.folds import train_fold as train

    return train(
        load_fold(model_inputs, fold),
        splits,
        patch_store.patches,
        patch_store.geometry,
        parse(TrainingParams, training),
        variant=variant_name,
        backbone=backbone,
        aux_weight=aux_weight,
        fold=fold,
    )
