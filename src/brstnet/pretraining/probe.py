"""The frozen-encoder probe on a pretrained trunk: HEST-Bench's protocol.

Fold k's probe runs fold k's own encoder (pretrained on fold k's training patients'
slides, or on its held-out patients' too when asked) over the patch store; on the fold's
training spots only it standardises the features, keeps ``pca_dims`` principal
components (HEST-Bench: 256) and fits a ridge regression: HEST-Bench's fixed penalty
100 / (components x genes) without intercept (``ridge: hest``, its ``train_test_reg``),
or the penalty chosen by leave-one-out as the foundation-encoder probe does
(``ridge: loo``). Standardisation, PCA and ridge are linear, so they fold into the
model's head: the bundle is an ordinary model bundle that evaluation, robustness and
``brstnet predict`` run through the encoder unchanged.

With an inner split, the same probe is also fitted on the inner training sections and
scored on the inner validation sections (``inner_val_median_r``): the figure settings are
compared by, never the held-out patients'.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.preprocessing import StandardScaler

from ..features.rows import training_rows, validation_rows
from ..features.splits import OUTER, fold_patient_lists
from ..metrics import pearson_per_gene
from ..models import ModelSpec
from ..training import probe as frozen
from ..training.bundle import bundle_config
from ..training.folds import training_span
from ..training.inner import INNER_MEAN_R, INNER_MEDIAN_R
from .weights import PretrainedTrunk

if TYPE_CHECKING:
    import anndata as ad
    import torch

    from ..st.geometry import PatchGeometry
    from ..training.bundle import ModelBundle
    from ..training.devices import DeviceSetup

__all__ = ["fit_linear_probe", "inner_probe_scores", "pretrained_task", "train_ssl_probe"]

logger = logging.getLogger(__name__)


def pretrained_task(
    backbone: str, n_main: int, img_size: int, trunk: PretrainedTrunk | None, **spec_args
) -> torch.nn.Module:
    """An expression task whose trunk holds ``trunk``'s weights (None: random, seed 0)."""
    spec = ModelSpec.for_backbone(backbone, n_main=n_main, img_size=img_size, **spec_args)
    task = spec.build(seed=0)
    if trunk is not None:
        trunk.load_into(task.model.trunk)
    return task


def fit_linear_probe(
    x: np.ndarray, y: np.ndarray, *, pca_dims: int | None = 256, ridge: str = "hest"
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Standardise, PCA, ridge (HEST-Bench's probe), as one linear map of the raw features.

    Args:
        x: [n, F] training features.
        y: [n, G] training targets.
        pca_dims: Principal components kept (at most n and F; None: no PCA).
        ridge: ``hest``: HEST-Bench's fixed penalty 100 / (d x G) on d components, no
            intercept (its ``train_test_reg``); ``loo``: the penalty chosen by
            leave-one-out on the training spots, with an intercept (scikit-learn's
            ``RidgeCV``, as the foundation-encoder probe).

    Returns:
        weight [G, F] and bias [G] acting on raw features, and what was fitted (``alpha``,
        ``pca_dims``).
    """
    if ridge not in ("hest", "loo"):
        raise ValueError(f"unknown probe ridge {ridge!r}; use hest or loo")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    y = y.reshape(len(y), -1)
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    z = (x - scaler.mean_) / scale
    project = np.eye(x.shape[1])  # [d, F] on the standardised features
    centre = np.zeros(x.shape[1])
    if pca_dims is not None and min(pca_dims, *x.shape) < x.shape[1]:
        pca = PCA(n_components=min(pca_dims, *x.shape), svd_solver="full").fit(z)
        project, centre = pca.components_, pca.mean_
    scores = (z - centre) @ project.T
    if ridge == "hest":
        alpha = 100.0 / (scores.shape[1] * y.shape[1])
        model = Ridge(alpha=alpha, fit_intercept=False).fit(scores, y)
    else:
        model = RidgeCV(alphas=frozen.ALPHAS).fit(scores, y)
        alpha = float(model.alpha_)
    on_standardised = np.atleast_2d(model.coef_) @ project  # [G, F]
    weight = on_standardised / scale
    bias = np.atleast_1d(model.intercept_) - on_standardised @ (scaler.mean_ / scale + centre)
    info = {"alpha": float(alpha), "pca_dims": int(project.shape[0]), "ridge": ridge}
    return weight.astype(np.float32), np.asarray(bias, np.float32).reshape(-1), info


def inner_probe_scores(
    fold_input: ad.AnnData,
    features: np.ndarray,
    splits: pd.DataFrame,
    fold: int,
    *,
    pca_dims: int | None = 256,
    ridge: str = "hest",
) -> dict[str, float]:
    """The probe fitted on each inner split's training sections, scored on its
    validation sections: mean and median per-gene Pearson r (averaged over inner folds;
    NaN without an inner split)."""
    inner = splits[(splits["fold"] == fold) & (splits["inner_fold"] != OUTER)]
    means, medians = [], []
    patch_rows = fold_input.obs["patch_row"].to_numpy()
    features = np.asarray(features, np.float64)
    targets = np.asarray(fold_input.X, dtype=np.float64)
    for _, part in inner.groupby("inner_fold"):
        train = training_rows(fold_input, list(part.loc[part["role"] == "train", "section"]))
        val = validation_rows(fold_input, list(part.loc[part["role"] == "val", "section"]))
        if len(train) < 2 or len(val) < 2:
            continue
        weight, bias, _ = fit_linear_probe(
            features[patch_rows[train]], targets[train], pca_dims=pca_dims, ridge=ridge
        )
        predicted = features[patch_rows[val]] @ weight.T.astype(np.float64) + bias
        r = pearson_per_gene(targets[val], predicted)
        if np.isfinite(r).any():
            means.append(float(np.nanmean(r)))
            medians.append(float(np.nanmedian(r)))
    return {
        INNER_MEAN_R: float(np.mean(means)) if means else float("nan"),
        INNER_MEDIAN_R: float(np.mean(medians)) if medians else float("nan"),
    }


def train_ssl_probe(
    fold_input: ad.AnnData,
    patches: np.ndarray,
    splits: pd.DataFrame,
    geometry: PatchGeometry,
    trunk: PretrainedTrunk | None,
    setup: DeviceSetup,
    *,
    variant: str,
    backbone: str,
    fold: int,
    pca_dims: int | None = 256,
    ridge: str = "hest",
    batch_size: int = 64,
    training: dict[str, Any] | None = None,
) -> tuple[ModelBundle, pd.DataFrame]:
    """One fold's probe on fold ``fold``'s pretrained trunk, as a bundle, and its
    one-row history (``stage`` probe).

    Args:
        fold_input: The fold's model input.
        patches: The patch store's patches (rows as ``fold_input.obs["patch_row"]``).
        splits: Outer and inner splits.
        geometry: The patch store's geometry (saved in the bundle).
        trunk: The fold's pretrained trunk (None: a random trunk, the control).
        setup: Where the features are computed.
        pca_dims: Principal components kept before the ridge (None: all).
        ridge: ``hest`` (HEST-Bench's fixed penalty) or ``loo`` (see
            :func:`fit_linear_probe`).
        training: Settings recorded in the bundle's ``training`` block.

    Raises:
        ValueError: the trunk was pretrained for another backbone, input size or fold.
    """
    started = time.time()
    if trunk is not None:
        check_trunk(trunk, backbone=backbone, img_size=geometry.size_px, fold=fold)
    task = pretrained_task(backbone, fold_input.n_vars, geometry.size_px, trunk)
    features = frozen.extract_features(task, patches, setup, batch_size=batch_size)
    train = training_rows(fold_input)
    x = np.asarray(features, np.float64)[fold_input.obs["patch_row"].to_numpy()[train]]
    y = np.asarray(fold_input.X, np.float64)[train]
    weight, bias, info = fit_linear_probe(x, y, pca_dims=pca_dims, ridge=ridge)
    info["training_spots"] = int(len(train))
    info["train_mean_r"] = float(np.nanmean(pearson_per_gene(y, x @ weight.T + bias)))
    depth = None
    if "depth_target" in fold_input.obs:  # a depth head, where the targets have one
        depth_y = fold_input.obs["depth_target"].to_numpy(np.float64)[train]
        depth_weight, depth_bias, _ = fit_linear_probe(x, depth_y, pca_dims=pca_dims, ridge=ridge)
        depth = (depth_weight, depth_bias)
    info.update(
        inner_probe_scores(fold_input, features, splits, fold, pca_dims=pca_dims, ridge=ridge)
    )
    spec_args = {"depth_weight": 1.0} if depth is not None else {}
    task = pretrained_task(backbone, fold_input.n_vars, geometry.size_px, trunk, **spec_args)
    config = bundle_config(
        variant=variant,
        fold=fold,
        spec=ModelSpec.for_backbone(
            backbone, n_main=fold_input.n_vars, img_size=geometry.size_px, **spec_args
        ),
        geometry=geometry,
        fold_input=fold_input,
        aux_genes=[],
        **fold_patient_lists(splits, fold),
        training={
            **(training or {}),
            "probe": f"pca_ridge_{ridge}",
            "encoder": "random" if trunk is None else "pretrained",
            "pretrained": None if trunk is None else trunk.metadata,
            "best_epoch": 0,
            **{
                k: v if not isinstance(v, float) or np.isfinite(v) else None
                for k, v in info.items()
            },
            **training_span(started),
        },
    )
    logger.info(
        "%s fold %d: PCA %d + ridge probe on %d training spots, alpha %.3g, training r %.3f, "
        "inner validation median r %.3f",
        variant,
        fold,
        info["pca_dims"],
        info["training_spots"],
        info["alpha"],
        info["train_mean_r"],
        info[INNER_MEDIAN_R],
    )
    history = pd.DataFrame([{"stage": "probe", "epoch": 0, **info}])
    if depth is not None:
        return frozen.probe_bundle(task, weight, bias, config, depth), history
    return frozen.probe_bundle(task, weight, bias, config), history


def check_trunk(trunk: PretrainedTrunk, *, backbone: str, img_size: int, fold: int) -> None:
    meta = trunk.metadata
    wrong = {
        key: (meta.get(key), want)
        for key, want in (("backbone", backbone), ("img_size", img_size), ("fold", fold))
        if key in meta and meta[key] != want
    }
    if wrong:
        raise ValueError(
            f"pretrained trunk {trunk.path} was pretrained with "
            + ", ".join(f"{k} {have!r}" for k, (have, _) in wrong.items())
            + ", not "
            + ", ".join(f"{k} {want!r}" for k, (_, want) in wrong.items())
            + "; rerun the pretraining pipeline with these settings"
        )
