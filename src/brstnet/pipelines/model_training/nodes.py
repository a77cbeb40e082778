"""The training nodes: thin adapters over :func:`brstnet.training.folds.train_fold`, the
frozen-encoder probes and the self-supervised probe.

The library modules behind them import torch and timm, so they are lazy modules (loaded
when a node first runs): listing or registering the pipelines stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from brstnet.config import PretrainingParams, TrainingParams
from brstnet.st.patches import PatchStore  # resolvable at run time: Kedro reads the hints
from brstnet.training.params import Variant

from ..nodes_common import lazy_module, load_fold, parse

if TYPE_CHECKING:
    import brstnet.pretraining.probe as pretraining_probe
    import brstnet.pretraining.weights as pretraining_weights
    import brstnet.training.bundle as training_bundle
    import brstnet.training.devices as devices
    import brstnet.training.fold_inputs as fold_inputs
    import brstnet.training.folds as folds
    import brstnet.training.probe as probe
else:
    training_bundle = lazy_module("brstnet.training.bundle")
    pretraining_weights = lazy_module("brstnet.pretraining.weights")
    pretraining_probe = lazy_module("brstnet.pretraining.probe")
    devices = lazy_module("brstnet.training.devices")
    fold_inputs = lazy_module("brstnet.training.fold_inputs")
    folds = lazy_module("brstnet.training.folds")
    probe = lazy_module("brstnet.training.probe")


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
    context: bool = False,
) -> tuple[training_bundle.ModelBundle, pd.DataFrame]:
    """Train one variant on one fold (see :mod:`brstnet.training.folds`).

    Returns:
        ``<variant>_fold<k>.model`` (weights, model spec, patch geometry, panel, target
        statistics) and ``<variant>_fold<k>.training_history`` (one row per stage and epoch).
    """
    return folds.train_fold(
        fold_inputs.FoldData(
            load_fold(model_inputs, fold), patch_store.patches, patch_store.geometry, fold
        ),
        splits,
        parse(TrainingParams, training),
        Variant(variant_name, backbone, aux_weight, context=context),
    )


def extract_features(patch_store: PatchStore, training: dict[str, Any], *, encoder: str):
    """A frozen encoder's features of every patch (``encoder_features_<encoder>``, [N, F])."""
    cfg = parse(TrainingParams, training)
    task = probe.encoder_task(
        encoder,
        n_main=1,
        img_size=patch_store.geometry.size_px,
        source=cfg.encoder_weights.get(encoder),
        cache_dir=cfg.hf_cache_dir,
    )
    setup = devices.resolve_device(cfg.device, amp=cfg.amp, num_workers=cfg.num_workers)
    return probe.extract_features(
        task, patch_store.patches, setup, batch_size=max(cfg.batch_size, 64)
    )


def fit_probe(
    model_inputs: dict,
    splits: pd.DataFrame,
    patch_store: PatchStore,
    features,
    training: dict[str, Any],
    *,
    variant_name: str,
    encoder: str,
    fold: int,
) -> tuple[training_bundle.ModelBundle, pd.DataFrame]:
    """One fold's ridge probe on a frozen encoder's features (see :mod:`brstnet.training.probe`).

    Returns:
        ``<variant>_fold<k>.model`` (the encoder with the probe as its head) and
        ``<variant>_fold<k>.training_history`` (one row: penalty, training r).
    """
    cfg = parse(TrainingParams, training)
    return probe.train_probe(
        load_fold(model_inputs, fold),
        features,
        splits,
        patch_store.geometry,
        variant=variant_name,
        encoder=encoder,
        fold=fold,
        source=cfg.encoder_weights.get(encoder),
        cache_dir=cfg.hf_cache_dir,
        training=cfg.model_dump(exclude={"backbones", "aux_weights", "contexts", "probes"}),
    )


def train_fold_pretrained(
    model_inputs: dict,
    splits: pd.DataFrame,
    patch_store: PatchStore,
    pretrained: pretraining_weights.PretrainedTrunk,
    training: dict[str, Any],
    **variant: Any,
) -> tuple[training_bundle.ModelBundle, pd.DataFrame]:
    """:func:`train_fold` with the trunk starting from this fold's self-supervised weights
    (``model_training.init: pretrained``; ``pretrained_<tag>_fold<k>``), read as initial
    weights: the training's fingerprint holds the file's content, so a checkpoint is never
    resumed across other initial weights."""
    pretraining_probe.check_trunk(
        pretrained,
        backbone=variant["backbone"],
        img_size=patch_store.geometry.size_px,
        fold=variant["fold"],
    )
    weights = {**dict(training), "init": None, "initial_weights": str(pretrained.path)}
    return train_fold(model_inputs, splits, patch_store, weights, **variant)


def fit_ssl_probe(
    model_inputs: dict,
    splits: pd.DataFrame,
    patch_store: PatchStore,
    pretrained: pretraining_weights.PretrainedTrunk,
    training: dict[str, Any],
    pretraining: dict[str, Any],
    *,
    variant_name: str,
    backbone: str,
    fold: int,
) -> tuple[training_bundle.ModelBundle, pd.DataFrame]:
    """HEST-Bench's probe (PCA + ridge) on fold ``fold``'s own self-supervised encoder
    (see :mod:`brstnet.pretraining.probe`).

    Returns:
        ``<variant>_fold<k>.model`` (the encoder with the probe as its head) and
        ``<variant>_fold<k>.training_history`` (one row: PCA, penalty, training and inner
        validation r).
    """
    cfg = parse(TrainingParams, training)
    pre = parse(PretrainingParams, pretraining)
    return pretraining_probe.train_ssl_probe(
        load_fold(model_inputs, fold),
        patch_store.patches,
        splits,
        patch_store.geometry,
        pretrained,
        devices.resolve_device(cfg.device, amp=cfg.amp, num_workers=cfg.num_workers),
        variant=variant_name,
        backbone=backbone,
        fold=fold,
        pca_dims=pre.probe_pca_dims,
        ridge=pre.probe_ridge,
        batch_size=max(cfg.batch_size, 64),
        # the encoder's settings: its MLflow run shows how it was pretrained
        training={
            **cfg.model_dump(exclude={"backbones", "aux_weights", "probes"}),
            **pre.model_dump(include={"epochs", "optimizer", "lr", "batch_size", "seed"}),
            "final": "pca_ridge_probe",
            "pretraining": pre.model_dump(),
        },
    )
