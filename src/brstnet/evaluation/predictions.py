"""Held-out predictions of one fold, as AnnData with the observed values beside them.

Every held-out spot with a patch is predicted (``brstnet.features.rows.held_out_rows``:
the tissue check filters training spots, not test spots).

torch and the training code are imported inside :func:`predict_fold` only, so that the
table-building functions stay light.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd

from brstnet.features.rows import held_out_rows
from brstnet.features.targets import convert_scale, invert_zscore, predicted_log_depth

if TYPE_CHECKING:
    from brstnet.training.bundle import ModelBundle

logger = logging.getLogger(__name__)


def predictions_anndata(
    fold_input: ad.AnnData,
    positions: np.ndarray,
    predicted: np.ndarray,
    *,
    variant: str,
    fold: int,
    predicted_log_depth: np.ndarray | None = None,
) -> ad.AnnData:
    """Predictions with the observed values beside them, in the model and target scales.

    Args:
        fold_input: The fold's model input: X z-scored targets [n_spots, n_genes], var
            ``target_mean`` / ``target_std``, layers ``counts``, obsm ``spatial``, uns
            ``transform``.
        positions: [n] positions of the predicted spots in ``fold_input``.
        predicted: [n, n_genes] predictions in the model (z-scored) scale.
        variant: Label of the model or baseline (``uns["variant"]``).
        fold: Outer fold (``uns["fold"]``).
        predicted_log_depth: [n] the predicted log read depth of each spot (a depth
            head's), or None.

    Returns:
        AnnData [n, n_genes]: X the predictions (float32); layers ``observed`` (z-scored),
        ``predicted_target_scale`` / ``observed_target_scale`` (z-score inverted with the
        fold's training statistics), ``observed_counts``; obs and var copied from the
        fold; obsm ``spatial`` [n, 2]. With ``predicted_log_depth``: obs
        ``predicted_log_depth`` and, for ``library`` and ``log1p`` targets, layers
        ``predicted_log1p`` (log(1 + count) on the training scale: depth x composition)
        and ``predicted_library`` (log(1 + reads per 10,000)).
    """
    stats = pd.DataFrame(
        {
            "mean": fold_input.var["target_mean"].to_numpy(),
            "std": fold_input.var["target_std"].to_numpy(),
        }
    )
    observed = np.asarray(fold_input.X)[positions]
    out = ad.AnnData(
        X=np.asarray(predicted).astype(np.float32),
        obs=fold_input.obs.iloc[positions].copy(),
        var=fold_input.var.copy(),
    )
    out.layers["observed"] = observed.astype(np.float32)
    out.layers["predicted_target_scale"] = invert_zscore(predicted, stats)
    out.layers["observed_target_scale"] = invert_zscore(observed, stats)
    out.layers["observed_counts"] = np.asarray(fold_input.layers["counts"])[positions]
    out.obsm["spatial"] = np.asarray(fold_input.obsm["spatial"])[positions]
    transform = str(fold_input.uns["transform"])
    if predicted_log_depth is not None:
        depth = np.asarray(predicted_log_depth, dtype=np.float64)
        out.obs["predicted_log_depth"] = depth.astype(np.float32)
        for scale in ("log1p", "library"):
            converted = convert_scale(out.layers["predicted_target_scale"], depth, transform, scale)
            if converted is not None:
                out.layers[f"predicted_{scale}"] = converted
    out.uns.update(
        variant=variant,
        fold=int(fold),
        transform=str(fold_input.uns["transform"]),
        smoothing=str(fold_input.uns.get("smoothing", "none")),
        scale="X: z-scored target scale",
    )
    return out


def check_panel(config: dict, fold_input: ad.AnnData) -> None:
    """Fail unless the model predicts exactly the fold's gene panel, in its order.

    Args:
        config: The model bundle's configuration (``genes``, ``variant``, ``fold``).
        fold_input: The fold's model input.

    Raises:
        ValueError: the model was trained on another gene panel than the fold's.
    """
    if list(config["genes"]) != [str(g) for g in fold_input.var_names]:
        raise ValueError(
            f"model {config['variant']} fold {int(config['fold'])} was trained on another gene "
            "panel than the current model inputs; rerun model_training after feature_selection"
        )


def predict_fold(
    bundle: ModelBundle,
    fold_input: ad.AnnData,
    patches: np.ndarray,
    *,
    batch_size: int,
    tta: bool,
    device: str,
) -> ad.AnnData:
    """Predict every held-out spot of the bundle's fold.

    Args:
        bundle: The trained model (``config`` with ``variant``, ``fold``, ``genes``).
        fold_input: The model input of the bundle's fold.
        patches: [N_store, H, W, 3] uint8 patch store (rows named by obs ``patch_row``).
        batch_size: Patches per forward pass.
        tta: Average over the 8 flips / rotations.
        device: ``auto``, ``cpu``, ``cuda``, ... (see ``resolve_device``).

    Returns:
        The predictions AnnData of :func:`predictions_anndata`.

    Raises:
        ValueError: the model was trained on another gene panel than the fold's.
    """
    # torch (the models) only when a fold is predicted, not to read predictions
    from brstnet.training.data import PatchBatches
    from brstnet.training.devices import resolve_device
    from brstnet.training.fold_inputs import fold_neighbours
    from brstnet.training.loop import predict

    config = bundle.config
    fold, variant = int(config["fold"]), config["variant"]
    check_panel(config, fold_input)
    setup = resolve_device(device)
    task = bundle.build_task().to(setup.device)
    positions = held_out_rows(fold_input)
    neighbours, groups = (
        fold_neighbours(fold_input, positions) if bundle.spec.context else (None, None)
    )
    data = PatchBatches(
        patches,
        fold_input.obs["patch_row"].to_numpy()[positions],
        neighbours=neighbours,
        groups=groups,
    )
    predicted, depth_z = predict(task, data, setup, batch_size=batch_size, tta=tta, depth=True)
    logger.info(
        "%s fold %d: predicted %d held-out spots%s",
        variant,
        fold,
        len(positions),
        " with TTA" if tta else "",
    )
    return predictions_anndata(
        fold_input,
        positions,
        predicted,
        variant=variant,
        fold=fold,
        predicted_log_depth=predicted_log_depth(config, depth_z),
    )
