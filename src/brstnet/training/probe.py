"""Frozen foundation encoders: features once per spot, a ridge probe per fold.

As in the HEST benchmark, the encoder is not trained: :func:`extract_features` runs it
once over the whole patch store, and :func:`fit_probe` fits, per outer fold, a ridge
regression from the standardised features of the fold's training spots to its targets,
with the penalty chosen by leave-one-out on those training spots only (scikit-learn's
``RidgeCV``). A sweep over encoders then costs one forward pass per encoder plus
seconds per fold.

The probe is folded into the model's linear head (standardisation included), so its
bundle is an ordinary :class:`~brstnet.training.bundle.ModelBundle`: evaluation,
robustness and whole-slide inference run it unchanged, through the encoder.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from ..features.rows import training_rows
from ..features.splits import fold_patient_lists
from ..metrics import pearson_per_gene
from ..models import ModelSpec
from ..models.encoders import load_encoder_weights
from .bundle import ModelBundle, bundle_config
from .data import InputNormaliser
from .devices import DeviceSetup, autocast
from .fold_inputs import check_encoder_geometry
from .folds import training_span

if TYPE_CHECKING:
    import anndata as ad

    from ..st.geometry import PatchGeometry

logger = logging.getLogger(__name__)

#: Ridge penalties tried (leave-one-out on the fold's training spots picks one).
ALPHAS = np.logspace(-1, 5, 13)


def encoder_task(
    encoder: str,
    *,
    n_main: int,
    img_size: int,
    source: str | None = None,
    cache_dir: str | None = None,
    depth: bool = False,
) -> torch.nn.Module:
    """An expression task on ``encoder`` with its pretrained trunk (heads untrained; a
    depth head with ``depth``)."""
    spec = ModelSpec.for_backbone(
        encoder, n_main=n_main, img_size=img_size, depth_weight=1.0 if depth else 0.0
    )
    task = spec.build(seed=0)
    load_encoder_weights(task.model.trunk, encoder, source=source, cache_dir=cache_dir)
    return task


@torch.no_grad()
def extract_features(
    task: torch.nn.Module, patches: np.ndarray, setup: DeviceSetup, *, batch_size: int
) -> np.ndarray:
    """The trunk's features of every patch: [N, H, W, 3] uint8 -> [N, F] float32."""
    task.eval().to(setup.device)
    trunk = task.model.trunk
    if setup.channels_last:
        trunk.to(memory_format=torch.channels_last)
    normalise = InputNormaliser.for_task(task, setup.device, channels_last=setup.channels_last)
    out = []
    for start in tqdm(range(0, len(patches), batch_size), desc="encoder features", unit="batch"):
        images = torch.from_numpy(np.ascontiguousarray(patches[start : start + batch_size]))
        with autocast(setup):
            out.append(trunk(normalise(images)).float())
    if not out:
        return np.zeros((0, int(trunk.num_features)), np.float32)
    return torch.cat(out).cpu().numpy()


def _linear_ridge(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """RidgeCV on standardised ``x``, folded into one linear map of the raw ``x``:
    weight [n_out, F], bias [n_out], the chosen penalty."""
    scaler = StandardScaler().fit(x)
    ridge = RidgeCV(alphas=ALPHAS).fit(scaler.transform(x), y)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    weight = np.atleast_2d(ridge.coef_) / scale  # [n_out, F]
    bias = np.atleast_1d(ridge.intercept_) - weight @ scaler.mean_
    return weight, bias, float(ridge.alpha_)


def fit_probe(
    fold_input: ad.AnnData, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Ridge from the training spots' features to their targets, as one linear map.

    Args:
        fold_input: The fold's model input (X targets; obs ``role``, ``passes_tissue``,
            ``patch_row``; ``depth_target`` for the depth head).
        features: [N_store, F] encoder features (rows as the patch store's).

    Returns:
        weight [n_main, F] and bias [n_main] acting on the raw features (the
        standardisation folded in), and what was fitted (penalty, training r; with a
        ``depth_target``, ``depth_weight`` [1, F] and ``depth_bias`` [1]: a second ridge,
        the depth head's).
    """
    train = training_rows(fold_input)
    x = np.asarray(features, dtype=np.float64)[fold_input.obs["patch_row"].to_numpy()[train]]
    y = np.asarray(fold_input.X, dtype=np.float64)[train]
    weight, bias, alpha = _linear_ridge(x, y)
    fitted = x @ weight.T + bias
    info: dict[str, Any] = {
        "alpha": alpha,
        "training_spots": int(len(train)),
        "train_mean_r": float(np.nanmean(pearson_per_gene(y, fitted))),
    }
    if "depth_target" in fold_input.obs:
        depth = fold_input.obs["depth_target"].to_numpy(np.float64)[train]
        depth_weight, depth_bias, _ = _linear_ridge(x, depth)
        info["depth_weight"] = depth_weight.astype(np.float32)
        info["depth_bias"] = depth_bias.astype(np.float32)
    return weight.astype(np.float32), bias.astype(np.float32), info


def probe_bundle(
    task: torch.nn.Module,
    weight: np.ndarray,
    bias: np.ndarray,
    config: dict[str, Any],
    depth: tuple[np.ndarray, np.ndarray] | None = None,
) -> ModelBundle:
    """The encoder with the probe as its main head (and its depth ridge as its depth
    head, given as ``depth`` = (weight [1, F], bias [1])), as a bundle."""
    with torch.no_grad():
        task.model.head.weight.copy_(torch.from_numpy(weight))
        task.model.head.bias.copy_(torch.from_numpy(bias))
        if depth is not None:
            task.model.depth_head.weight.copy_(torch.from_numpy(depth[0]))
            task.model.depth_head.bias.copy_(torch.from_numpy(depth[1]))
    state = {k: v.detach().cpu().clone() for k, v in task.state_dict().items()}
    return ModelBundle(config=config, state_dict=state)


def train_probe(
    fold_input: ad.AnnData,
    features: np.ndarray,
    splits: pd.DataFrame,
    geometry: PatchGeometry,
    *,
    variant: str,
    encoder: str,
    fold: int,
    source: str | None,
    cache_dir: str | None,
    training: dict[str, Any],
) -> tuple[ModelBundle, pd.DataFrame]:
    """One fold's probe as a bundle, and its one-row history (``stage`` probe)."""
    started = time.time()
    check_encoder_geometry(encoder, geometry)
    weight, bias, info = fit_probe(fold_input, features)
    depth = (info.pop("depth_weight"), info.pop("depth_bias")) if "depth_weight" in info else None
    task = encoder_task(
        encoder,
        n_main=fold_input.n_vars,
        img_size=geometry.size_px,
        source=source,
        cache_dir=cache_dir,
        depth=depth is not None,
    )
    config = bundle_config(
        variant=variant,
        fold=fold,
        spec=ModelSpec.for_backbone(
            encoder,
            n_main=fold_input.n_vars,
            img_size=geometry.size_px,
            depth_weight=1.0 if depth is not None else 0.0,
        ),
        geometry=geometry,
        fold_input=fold_input,
        aux_genes=[],
        **fold_patient_lists(splits, fold),
        training={
            **training,
            "probe": "ridge",
            "best_epoch": 0,
            **info,
            **training_span(started),
        },
    )
    logger.info(
        "%s fold %d: ridge probe on %d training spots, alpha %g, training r %.3f",
        variant,
        fold,
        info["training_spots"],
        info["alpha"],
        info["train_mean_r"],
    )
    history = pd.DataFrame([{"stage": "probe", "epoch": 0, **info}])
    return probe_bundle(task, weight, bias, config, depth), history
