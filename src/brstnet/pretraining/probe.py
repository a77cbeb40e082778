"""The frozen-encoder probe on a pretrained trunk: HEST-Bench's protocol, PCA then ridge.

Fold k's probe runs fold k's own encoder (pretrained on fold k's training patients'
slides, or on its held-out patients' too when asked) over the patch store, reduces the
features to ``pca_dims`` principal components fitted on the fold's training spots only
(HEST-Bench: 256), and fits the ridge of :func:`brstnet.training.probe.fit_probe`
(standardised inputs, penalty by leave-one-out on the training spots). PCA and ridge are
linear, so both fold into the model's head: the bundle is an ordinary model bundle that
evaluation, robustness and ``brstnet predict`` run through the encoder unchanged.

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
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

from ..features.rows import training_rows, validation_rows
from ..features.splits import OUTER, fold_patients
from ..metrics import pearson_per_gene
from ..models import ModelSpec
from ..training import probe as frozen
from .weights import PretrainedTrunk

if TYPE_CHECKING:
    import anndata as ad
    import torch

    from ..st.geometry import PatchGeometry
    from ..training.bundle import ModelBundle
    from ..training.devices import DeviceSetup

__all__ = ["fit_pca", "inner_probe_scores", "pretrained_task", "train_ssl_probe"]

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


def fit_pca(features: np.ndarray, dims: int | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Principal axes of ``features`` ([n, F]): (components [d, F], mean [F]), with
    d = min(dims, n, F); None when ``dims`` is None or keeps every dimension anyway."""
    n, width = features.shape
    if dims is None or dims >= width:
        return None
    pca = PCA(n_components=min(dims, n, width), svd_solver="full").fit(features)
    return pca.components_.astype(np.float64), pca.mean_.astype(np.float64)


def _project(features: np.ndarray, pca: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    return x if pca is None else (x - pca[1]) @ pca[0].T


def _fold_pca(weight, bias, pca):
    """A linear map of PCA scores as a map of the raw features."""
    if pca is None:
        return weight, bias
    components, mean = pca
    raw = np.asarray(weight, np.float64) @ components
    return raw.astype(np.float32), (np.asarray(bias, np.float64) - raw @ mean).astype(np.float32)


def inner_probe_scores(
    fold_input: ad.AnnData,
    features: np.ndarray,
    splits: pd.DataFrame,
    fold: int,
    *,
    pca_dims: int | None,
) -> dict[str, float]:
    """PCA + ridge fitted on each inner split's training sections, scored on its
    validation sections: mean and median per-gene Pearson r (averaged over inner folds;
    NaN without an inner split)."""
    inner = splits[(splits["fold"] == fold) & (splits["inner_fold"] != OUTER)]
    means, medians = [], []
    patch_rows = fold_input.obs["patch_row"].to_numpy()
    targets = np.asarray(fold_input.X, dtype=np.float64)
    for _, part in inner.groupby("inner_fold"):
        train = training_rows(fold_input, list(part.loc[part["role"] == "train", "section"]))
        val = validation_rows(fold_input, list(part.loc[part["role"] == "val", "section"]))
        if len(train) < 2 or len(val) < 2:
            continue
        x_train = np.asarray(features, np.float64)[patch_rows[train]]
        pca = fit_pca(x_train, pca_dims)
        scaler = StandardScaler().fit(_project(x_train, pca))
        ridge = RidgeCV(alphas=frozen.ALPHAS).fit(
            scaler.transform(_project(x_train, pca)), targets[train]
        )
        x_val = scaler.transform(_project(np.asarray(features, np.float64)[patch_rows[val]], pca))
        r = pearson_per_gene(targets[val], ridge.predict(x_val))
        if np.isfinite(r).any():
            means.append(float(np.nanmean(r)))
            medians.append(float(np.nanmedian(r)))
    return {
        "inner_val_mean_r": float(np.mean(means)) if means else float("nan"),
        "inner_val_median_r": float(np.mean(medians)) if medians else float("nan"),
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
        training: Settings recorded in the bundle's ``training`` block.

    Raises:
        ValueError: the trunk was pretrained for another backbone, input size or fold.
    """
    from ..training.bundle import bundle_config
    from ..training.folds import training_span

    started = time.time()
    if trunk is not None:
        _check_trunk(trunk, backbone=backbone, img_size=geometry.size_px, fold=fold)
    task = pretrained_task(backbone, fold_input.n_vars, geometry.size_px, trunk)
    features = frozen.extract_features(task, patches, setup, batch_size=batch_size)
    train = training_rows(fold_input)
    pca = fit_pca(
        np.asarray(features, np.float64)[fold_input.obs["patch_row"].to_numpy()[train]], pca_dims
    )
    weight, bias, info = frozen.fit_probe(fold_input, _project(features, pca))
    weight, bias = _fold_pca(weight, bias, pca)
    depth = None
    if "depth_weight" in info:  # a depth head's ridge, where fit_probe fits one
        depth = _fold_pca(info.pop("depth_weight"), info.pop("depth_bias"), pca)
    info["pca_dims"] = int(pca[0].shape[0]) if pca is not None else int(features.shape[1])
    info.update(inner_probe_scores(fold_input, features, splits, fold, pca_dims=pca_dims))
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
        train_patients=fold_patients(splits, fold, "train"),
        test_patients=fold_patients(splits, fold, "test"),
        training={
            **(training or {}),
            "probe": "pca_ridge",
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
        "%s fold %d: PCA %d + ridge probe on %d training spots, alpha %g, training r %.3f, "
        "inner validation median r %.3f",
        variant,
        fold,
        info["pca_dims"],
        info["training_spots"],
        info["alpha"],
        info["train_mean_r"],
        info["inner_val_median_r"],
    )
    history = pd.DataFrame([{"stage": "probe", "epoch": 0, **info}])
    if depth is not None:
        return frozen.probe_bundle(task, weight, bias, config, depth), history
    return frozen.probe_bundle(task, weight, bias, config), history


def _check_trunk(trunk: PretrainedTrunk, *, backbone: str, img_size: int, fold: int) -> None:
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
