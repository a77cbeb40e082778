"""The training node: epoch selection on the inner split, then the final model.

torch and timm are imported inside the node, so that listing pipelines stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from brstnet import __version__
from brstnet.config import TrainingParams
from brstnet.features.splits import OUTER

from ..nodes_common import load_fold, parse, training_rows

if TYPE_CHECKING:
    import anndata as ad

    from brstnet.st.patches import PatchStore
    from brstnet.training.bundle import ModelBundle

logger = logging.getLogger(__name__)


def _batches(fold_input: ad.AnnData, patch_store: PatchStore, positions: np.ndarray, use_aux: bool):
    from brstnet.training.data import PatchBatches

    aux = np.asarray(fold_input.obsm["aux"])[positions] if use_aux else None
    return PatchBatches(
        patch_store.patches,
        fold_input.obs["patch_row"].to_numpy()[positions],
        np.asarray(fold_input.X)[positions],
        aux,
    )


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
    """Train one variant on one fold.

    With inner folds (from ``splits``), each inner fold trains for ``epochs`` epochs on
    its training sections and is validated on its validation sections; the epoch with
    the best mean validation r (averaged over inner folds) is chosen. Then
    ``final: retrain`` trains afresh on all training spots for that many epochs
    (BrST-Net, ST-Net), or ``final: best_checkpoint`` keeps the inner model at that epoch.
    Without inner folds the model trains ``epochs`` epochs on all training spots.

    Returns:
        ``<variant>.model`` (weights and everything needed to predict) and
        ``<variant>.training_history`` (one row per stage and epoch).
    """
    import torch

    from brstnet.models import ExpressionModel, ExpressionTask, load_initial_weights
    from brstnet.training.bundle import ModelBundle
    from brstnet.training.data import MEAN, STD
    from brstnet.training.devices import resolve_device
    from brstnet.training.loop import LoopConfig, fit

    cfg = parse(TrainingParams, training)
    setup = resolve_device(cfg.device, amp=cfg.amp, num_workers=cfg.num_workers)
    fold_input = load_fold(model_inputs, fold)
    aux_genes = [str(g) for g in fold_input.uns["aux_genes"]]
    use_aux = aux_weight > 0 and len(aux_genes) > 0
    size = int(patch_store.meta["size_px"])
    loop_kwargs = {
        k: getattr(cfg, k)
        for k in (
            "batch_size",
            "optimizer",
            "lr",
            "momentum",
            "weight_decay",
            "scheduler",
            "dihedral",
            "color_jitter",
            "seed",
        )
    }
    checkpoints = Path(cfg.checkpoint_dir) / f"{variant_name}_fold{fold}"

    def new_task() -> torch.nn.Module:
        torch.manual_seed(cfg.seed)
        model = ExpressionModel(
            backbone,
            n_main=fold_input.n_vars,
            n_aux=len(aux_genes) if use_aux else 0,
            img_size=size,
        )
        if cfg.initial_weights:
            load_initial_weights(model.trunk, cfg.initial_weights)
        return ExpressionTask(model, aux_weight=aux_weight)

    history = []
    inner = splits[(splits["fold"] == fold) & (splits["inner_fold"] != OUTER)]
    curves, inner_results = [], []
    for inner_fold, part in inner.groupby("inner_fold"):
        train_pos = training_rows(fold_input, list(part.loc[part["role"] == "train", "section"]))
        val_sections = list(part.loc[part["role"] == "val", "section"])
        val_pos = np.flatnonzero(
            fold_input.obs["section"].isin(val_sections).to_numpy()
            & (fold_input.obs["patch_row"] >= 0).to_numpy()
        )
        stage = f"inner{inner_fold}"
        logger.info(
            "%s fold %d %s: %d training spots, %d validation spots (%s)",
            variant_name,
            fold,
            stage,
            len(train_pos),
            len(val_pos),
            ", ".join(val_sections),
        )
        task = new_task()
        result = fit(
            task,
            _batches(fold_input, patch_store, train_pos, use_aux),
            _batches(fold_input, patch_store, val_pos, False),
            LoopConfig(epochs=cfg.epochs, **loop_kwargs),
            setup,
            checkpoint=checkpoints / f"{stage}.pt",
            desc=f"{variant_name} fold {fold} {stage}",
        )
        history += [{"stage": stage, **h} for h in result.history]
        curves.append([h["val_mean_r"] for h in result.history])
        inner_results.append(result)

    all_train = training_rows(fold_input)
    if curves:
        mean_curve = np.nanmean(np.asarray(curves, dtype=float), axis=0)
        best_epoch = (
            int(np.nanargmax(mean_curve)) + 1 if np.isfinite(mean_curve).any() else cfg.epochs
        )
        logger.info(
            "%s fold %d: best epoch %d (mean validation r %.3f)",
            variant_name,
            fold,
            best_epoch,
            np.nanmax(mean_curve),
        )
    else:
        best_epoch = cfg.epochs
    if curves and cfg.final == "best_checkpoint":
        if len(inner_results) != 1:
            raise ValueError(
                "final: best_checkpoint needs one inner fold (feature_selection.split.inner.scheme: holdout)"
            )
        state = inner_results[0].best_state
    else:
        task = new_task()
        result = fit(
            task,
            _batches(fold_input, patch_store, all_train, use_aux),
            None,
            LoopConfig(epochs=best_epoch, **loop_kwargs),
            setup,
            checkpoint=checkpoints / "final.pt",
            desc=f"{variant_name} fold {fold} final",
        )
        history += [{"stage": "final", **h} for h in result.history]
        state = {k: v.detach().cpu() for k, v in task.state_dict().items()}
    for stale in checkpoints.glob("*.pt"):  # finished: the bundle replaces the checkpoints
        stale.unlink()

    outer = splits[(splits["fold"] == fold) & (splits["inner_fold"] == OUTER)]
    stats = fold_input.var
    config = {
        "brstnet_version": __version__,
        "variant": variant_name,
        "fold": fold,
        "backbone": backbone,
        "aux_weight": aux_weight if use_aux else 0.0,
        "size_px": size,
        "window_um": patch_store.meta["window_um"],
        "stain_reference": patch_store.meta["stain_reference"],
        "pixel_mean": list(MEAN),
        "pixel_std": list(STD),
        "genes": [str(g) for g in fold_input.var_names],
        "aux_genes": aux_genes if use_aux else [],
        "target": {
            "transform": str(fold_input.uns["transform"]),
            "zscore": bool(fold_input.uns["zscore"]),
            "mean": stats["target_mean"].astype(float).tolist(),
            "std": stats["target_std"].astype(float).tolist(),
        },
        "train_patients": sorted(outer.loc[outer["role"] == "train", "patient"].unique().tolist()),
        "test_patients": sorted(outer.loc[outer["role"] == "test", "patient"].unique().tolist()),
        "training": {
            **cfg.model_dump(exclude={"backbones", "aux_weights"}),
            "best_epoch": best_epoch,
            "final_epochs": best_epoch,
            "training_spots": int(len(all_train)),
            "device": str(setup.device),
        },
    }
    return ModelBundle(config=config, state_dict=state), pd.DataFrame(history)
