"""Training one variant on one outer fold, as library functions tested without Kedro.

BrST-Net / ST-Net protocol: each inner fold trains ``epochs`` epochs on its training
sections and is validated on its validation sections (:func:`train_inner_folds`); the
epoch with the best mean validation r is chosen (:func:`select_epoch`); then
``final: retrain`` trains afresh on all training spots for that many epochs
(:func:`train_final`), or ``final: best_checkpoint`` keeps the inner model at that epoch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ..features.rows import training_rows, validation_rows
from ..features.splits import OUTER, fold_patient_lists
from ..metrics.headline import TRAIN_SECONDS
from ..metrics.validation import VAL_MEAN_R
from ..models import ModelSpec, backbone_spec, load_initial_weights
from ..models.encoders import load_encoder_weights
from .bundle import ModelBundle, bundle_config
from .devices import DeviceSetup, resolve_device
from .fold_inputs import FoldData, check_encoder_geometry, fold_batches, fold_fingerprint
from .inner import INNER_MEDIAN_PARTIAL_R, INNER_MEDIAN_R, inner_validation, select_epoch
from .loop import FitResult, LoopConfig, fit
from .params import TrainingParams, Variant

logger = logging.getLogger(__name__)


@dataclass
class FoldTraining:
    """One variant on one fold: its data, model shape, settings and where it checkpoints."""

    fold_input: ad.AnnData
    patches: np.ndarray
    spec: ModelSpec
    cfg: TrainingParams
    setup: DeviceSetup
    checkpoints: Path
    label: str
    um_per_px: float | None = None
    #: What defines this training beyond the loop settings (:func:`fold_fingerprint`):
    #: a checkpoint written for another fingerprint is not resumed.
    fingerprint: str = ""

    def new_task(self) -> torch.nn.Module:
        """Fresh weights (seeded): a foundation encoder's pretrained trunk, or the
        configured initial trunk weights if any."""
        task = self.spec.build(seed=self.cfg.seed)
        if self.cfg.initial_weights:
            load_initial_weights(task.model.trunk, self.cfg.initial_weights)
        elif backbone_spec(self.spec.backbone).is_encoder:
            load_encoder_weights(
                task.model.trunk,
                self.spec.backbone,
                source=self.cfg.encoder_weights.get(self.spec.backbone),
                cache_dir=self.cfg.hf_cache_dir,
            )
        return task

    def train(self, positions: np.ndarray, val: np.ndarray | None, epochs: int, stage: str):
        """Fit a fresh model on ``positions`` (validated on ``val``); returns (task, result)."""
        task = self.new_task()
        result = fit(
            task,
            fold_batches(
                self.fold_input,
                self.patches,
                positions,
                with_aux=self.spec.uses_aux,
                depth_targets=self.spec.predicts_depth,
                context=self.spec.context,
            ),
            None
            if val is None
            else fold_batches(
                self.fold_input,
                self.patches,
                val,
                with_aux=False,
                with_depth=True,
                context=self.spec.context,
            ),
            LoopConfig.from_params(self.cfg, epochs=epochs, um_per_px=self.um_per_px),
            self.setup,
            checkpoint=self.checkpoints / f"{stage}.pt",
            desc=f"{self.label} {stage}",
            fingerprint=self.fingerprint,
        )
        return task, result


def train_inner_folds(
    job: FoldTraining, inner_splits: pd.DataFrame
) -> tuple[list[FitResult], list[dict]]:
    """Train one model per inner fold, validated on its validation sections.

    Args:
        inner_splits: The fold's rows of ``splits`` with ``inner_fold != OUTER``.

    Returns:
        The fits (in inner-fold order) and their history rows (``stage`` = inner<k>).
    """
    results, history = [], []
    for inner_fold, part in inner_splits.groupby("inner_fold"):
        train_sections = list(part.loc[part["role"] == "train", "section"])
        val_sections = list(part.loc[part["role"] == "val", "section"])
        train_pos = training_rows(job.fold_input, train_sections)
        val_pos = validation_rows(job.fold_input, val_sections)
        stage = f"inner{inner_fold}"
        logger.info(
            "%s %s: %d training spots, %d validation spots (%s)",
            job.label,
            stage,
            len(train_pos),
            len(val_pos),
            ", ".join(val_sections),
        )
        _, result = job.train(train_pos, val_pos, job.cfg.epochs, stage)
        history += [{"stage": stage, **h} for h in result.history]
        results.append(result)
    return results, history


def train_final(job: FoldTraining, epochs: int) -> tuple[dict[str, Any], list[dict]]:
    """Train afresh on every training spot of the fold for ``epochs`` epochs.

    Returns:
        The final weights (on CPU) and their history rows (``stage`` = final).
    """
    task, result = job.train(training_rows(job.fold_input), None, epochs, "final")
    state = {k: v.detach().cpu() for k, v in task.state_dict().items()}
    return state, [{"stage": "final", **h} for h in result.history]


def fold_job(
    data: FoldData, cfg: TrainingParams, variant: Variant
) -> tuple[FoldTraining, list[str]]:
    """One variant's training on one fold, set up (model shape, device, checkpoints).

    Returns:
        The job and the fold's auxiliary genes (the model predicts them when
        ``variant.aux_weight > 0``).
    """
    fold_input, geometry = data.fold_input, data.geometry
    check_encoder_geometry(variant.backbone, geometry)
    aux_genes = [str(g) for g in fold_input.uns["aux_genes"]]
    use_aux = variant.aux_weight > 0 and len(aux_genes) > 0
    spec = ModelSpec.for_backbone(
        variant.backbone,
        n_main=fold_input.n_vars,
        img_size=geometry.size_px,
        n_aux=len(aux_genes) if use_aux else 0,
        aux_weight=variant.aux_weight if use_aux else 0.0,
        depth_weight=cfg.depth_weight,
        context=variant.context,
        depth_detach=cfg.depth_detach,
    )
    job = FoldTraining(
        fold_input,
        data.patches,
        spec,
        cfg,
        resolve_device(cfg.device, amp=cfg.amp, num_workers=cfg.num_workers, compile=cfg.compile),
        Path(cfg.checkpoint_dir) / f"{variant.name}_fold{data.fold}",
        f"{variant.name} fold {data.fold}",
        geometry.window_um / geometry.size_px,
        fold_fingerprint(fold_input, data.patches, spec, geometry, cfg),
    )
    return job, aux_genes


def training_span(started: float) -> dict[str, float]:
    """When a fold's training started and ended (unix seconds) and how long it took
    (``training`` block of the bundle; the MLflow run's start, end and ``train_seconds``)."""
    ended = time.time()
    return {"started_at": started, "ended_at": ended, TRAIN_SECONDS.name: ended - started}


def train_fold(
    data: FoldData, splits: pd.DataFrame, cfg: TrainingParams, variant: Variant
) -> tuple[ModelBundle, pd.DataFrame]:
    """Train one variant on one fold: epoch selection on the inner split, then the final model.

    Args:
        data: The fold's model input, patches and patch geometry.
        splits: Outer and inner splits (``splits``).
        cfg: ``model_training`` parameters.
        variant: Its name, backbone, auxiliary weight and context.

    Returns:
        The bundle (weights, model spec, geometry, panel, target statistics, settings)
        and the training history (one row per stage and epoch).
    """
    started = time.time()
    job, aux_genes = fold_job(data, cfg, variant)
    fold, fold_input, geometry = data.fold, data.fold_input, data.geometry
    spec, use_aux = job.spec, job.spec.uses_aux
    fold_splits = splits[splits["fold"] == fold]
    inner, history = train_inner_folds(job, fold_splits[fold_splits["inner_fold"] != OUTER])
    curves = [[h[VAL_MEAN_R.name] for h in r.history] for r in inner]
    best_epoch, best_r = select_epoch(curves, cfg.epochs)
    inner_figures = inner_validation(history, best_epoch)
    if inner:
        logger.info(
            "%s: best epoch %d (inner validation: mean r %.3f, median r %.3f, median partial r "
            "given read depth %.3f)",
            job.label,
            best_epoch,
            best_r,
            inner_figures[INNER_MEDIAN_R],
            inner_figures[INNER_MEDIAN_PARTIAL_R],
        )
    if inner and cfg.final == "best_checkpoint":
        if len(inner) != 1:
            raise ValueError(
                "final: best_checkpoint needs one inner fold (feature_selection.split.inner.scheme: holdout)"
            )
        state = inner[0].best_state
    else:
        state, final_history = train_final(job, best_epoch)
        history += final_history
    config = bundle_config(
        variant=variant.name,
        fold=fold,
        spec=spec,
        geometry=geometry,
        fold_input=fold_input,
        aux_genes=aux_genes if use_aux else [],
        **fold_patient_lists(splits, fold),
        training={
            **cfg.model_dump(exclude={"backbones", "aux_weights", "contexts", "probes"}),
            "best_epoch": best_epoch,
            # JSON null where there is no inner validation (strict JSON has no NaN)
            **{k: v if np.isfinite(v) else None for k, v in inner_figures.items()},
            "training_spots": int(len(training_rows(fold_input))),
            "device": str(job.setup.device),
            **training_span(started),
        },
    )
    # the checkpoints go once the bundle is written (save_bundle), not before: a kill
    # between this return and the save resumes from them instead of retraining the fold
    bundle = ModelBundle(config=config, state_dict=state, checkpoints=job.checkpoints)
    return bundle, pd.DataFrame(history)
