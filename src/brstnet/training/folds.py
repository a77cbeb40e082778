"""Training one variant on one outer fold, as library functions tested without Kedro.

BrST-Net / ST-Net protocol: each inner fold trains ``epochs`` epochs on its training
sections and is validated on its validation sections (:func:`train_inner_folds`); the
epoch with the best mean validation r is chosen (:func:`select_epoch`); then
``final: retrain`` trains afresh on all training spots for that many epochs
(:func:`train_final`), or ``final: best_checkpoint`` keeps the inner model at that epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..features.rows import training_rows, validation_rows
from ..features.splits import OUTER
from ..features.targets import log_depth
from ..models import ModelSpec
from .data import PatchBatches
from .loop import FitResult, LoopConfig, fit

if TYPE_CHECKING:
    import anndata as ad
    import torch

    from ..config import TrainingParams
    from ..st.geometry import PatchGeometry
    from .bundle import ModelBundle
    from .devices import DeviceSetup

logger = logging.getLogger(__name__)

_LOOP_KEYS = (
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "scheduler",
    "dihedral",
    "color_jitter",
    "seed",
    "lr_scaling",
)


def loop_config(cfg: TrainingParams, epochs: int, *, um_per_px: float | None = None) -> LoopConfig:
    """The loop's settings from the ``model_training`` parameters.

    Args:
        um_per_px: The patches' micrometres per pixel (window / size), for the
            augmentations set in micrometres.
    """
    return LoopConfig(
        epochs=epochs,
        reference_batch_size=cfg.lr_reference_batch,
        stain_jitter=cfg.stain_jitter,
        max_pixel_um=cfg.resolution_jitter_um,
        blur_um=cfg.blur_sigma_um,
        um_per_px=um_per_px,
        **{k: getattr(cfg, k) for k in _LOOP_KEYS},
    )


def fold_batches(
    fold_input: ad.AnnData,
    patches: np.ndarray,
    positions: np.ndarray,
    *,
    with_aux: bool,
    with_depth: bool = False,
    depth_targets: bool = False,
    context: bool = False,
) -> PatchBatches:
    """The spots at ``positions`` of a fold's model input, with their targets (and, with
    ``with_depth``, their log total counts, for the validation's partial r; with
    ``depth_targets``, the depth head's targets)."""
    aux = np.asarray(fold_input.obsm["aux"])[positions] if with_aux else None
    depth = None
    if with_depth and "total_counts" in fold_input.obs:
        depth = log_depth(fold_input.obs["total_counts"].to_numpy(dtype=np.float64)[positions])
    neighbours, groups = None, None
    if context:
        neighbours, groups = fold_neighbours(fold_input, positions)
    depth_z = None
    if depth_targets:
        if "depth_target" not in fold_input.obs:
            raise ValueError(
                "the model has a depth head but the model inputs have no depth_target; rerun "
                "feature_selection (kedro run --pipelines=feature_selection)"
            )
        depth_z = fold_input.obs["depth_target"].to_numpy(dtype=np.float32)[positions]
    return PatchBatches(
        patches,
        fold_input.obs["patch_row"].to_numpy()[positions],
        np.asarray(fold_input.X)[positions],
        aux,
        depth,
        depth_z,
        neighbours,
        groups,
    )


def fold_neighbours(fold_input: ad.AnnData, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid neighbours of the spots at ``positions`` among themselves (positions into
    ``positions``), and their sections: a context model's spots (training, validation or
    held-out spots each see only their own set's)."""
    from ..st.neighbours import spot_neighbours

    sections = fold_input.obs["section"].astype(str).to_numpy()[positions]
    xy = np.asarray(fold_input.obsm["spatial"], dtype=float)[positions]
    return spot_neighbours(xy, sections), sections


def fold_fingerprint(
    fold_input: ad.AnnData,
    patches: np.ndarray,
    spec: ModelSpec,
    geometry: PatchGeometry,
    cfg: TrainingParams,
) -> str:
    """A hash of everything that defines one variant's training on one fold, beyond the
    loop settings: the model spec, the patch geometry (window, size, background threshold,
    stain reference) and the patches of the fold's spots, the gene panel and auxiliary
    genes, the target transform and statistics, the targets, the spots' roles, sections
    and tissue flags, and the initial weights named in the parameters (path and content).
    """
    from pandas.util import hash_pandas_object

    digest = hashlib.blake2b(digest_size=16)
    described = {
        "model": spec.to_dict(),
        "geometry": geometry.to_dict(),
        "genes": [str(g) for g in fold_input.var_names],
        "aux_genes": [str(g) for g in fold_input.uns.get("aux_genes", [])],
        "transform": str(fold_input.uns.get("transform")),
        "zscore": bool(fold_input.uns.get("zscore", True)),
        "initial_weights": cfg.initial_weights,
        # by content too: a file rewritten in place (a new pretraining) is another start
        "initial_weights_digest": _file_digest(cfg.initial_weights),
        "encoder_weights": cfg.encoder_weights.get(spec.backbone),
    }
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    obs_columns = [
        c for c in ("patch_row", "role", "section", "passes_tissue") if c in fold_input.obs
    ]
    tables = (fold_input.obs[obs_columns], fold_input.var)
    for table in tables:
        digest.update(hash_pandas_object(table, index=True).to_numpy().tobytes())
    for values in (fold_input.X, fold_input.obsm.get("aux")):
        values = np.ascontiguousarray(np.zeros(0) if values is None else np.asarray(values))
        digest.update(f"{values.dtype}{values.shape}".encode() + values.tobytes())
    rows = np.sort(fold_input.obs["patch_row"].to_numpy())
    rows = rows[rows >= 0]
    for start in range(0, len(rows), 1024):  # chunked: a memory-mapped store stays out of RAM
        digest.update(np.ascontiguousarray(patches[rows[start : start + 1024]]).tobytes())
    return digest.hexdigest()


def _file_digest(path: str | None) -> str | None:
    from ..pretraining.weights import file_digest

    return file_digest(path)


def select_epoch(curves: list[list[float]], default: int) -> tuple[int, float]:
    """The epoch (1-based) with the best validation r averaged over inner folds.

    Args:
        curves: Per inner fold, the validation mean r after each epoch.
        default: Returned when there is no finite validation r at all.

    Returns:
        The epoch and its mean validation r (NaN for ``default``).
    """
    if not curves:
        return default, float("nan")
    mean_curve = np.nanmean(np.asarray(curves, dtype=float), axis=0)
    if not np.isfinite(mean_curve).any():
        return default, float("nan")
    best = int(np.nanargmax(mean_curve))
    return best + 1, float(mean_curve[best])


#: The inner-validation figures of the chosen epoch (see :func:`inner_validation`).
INNER_METRICS = {
    "val_mean_r": "inner_val_mean_r",
    "val_median_r": "inner_val_median_r",
    "val_median_partial_r": "inner_val_median_partial_r",
}


def inner_validation(history: pd.DataFrame | list[dict], epoch: int) -> dict[str, float]:
    """The inner validation's figures at ``epoch``, averaged over the inner folds.

    These are what settings are chosen by (never the held-out patients): the mean and
    median per-gene r and the median partial r given read depth of the validation spots.

    Args:
        history: Training history rows (``stage`` inner<k>, ``epoch``, ``val_*``).
        epoch: The chosen epoch (1-based).

    Returns:
        ``inner_val_mean_r``, ``inner_val_median_r``, ``inner_val_median_partial_r``;
        NaN where the history has no such validation (no inner split, e.g. one training
        section, or a history written before the figure existed).
    """
    table = pd.DataFrame(history)
    out = dict.fromkeys(INNER_METRICS.values(), float("nan"))
    if table.empty or "stage" not in table:
        return out
    rows = table[table["stage"].astype(str).str.startswith("inner") & (table["epoch"] == epoch)]
    for column, name in INNER_METRICS.items():
        if column in rows and rows[column].notna().any():
            out[name] = float(rows[column].mean())
    return out


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
        from ..models import backbone_spec, load_initial_weights
        from ..models.encoders import load_encoder_weights

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
            loop_config(self.cfg, epochs, um_per_px=self.um_per_px),
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


def check_encoder_geometry(backbone: str, geometry: PatchGeometry) -> None:
    """A foundation encoder sees patches at the micrometres per pixel it was trained at.

    Raises:
        ValueError: the encoder takes a fixed input size the patches do not have.
    """
    from ..models import backbone_spec

    spec = backbone_spec(backbone)
    if not spec.is_encoder:
        return
    fixed = spec.kwargs.get("img_size") if not spec.kwargs.get("dynamic_img_size") else None
    if fixed is not None and geometry.size_px != fixed:
        raise ValueError(
            f"encoder {backbone} takes {fixed} px inputs, the patches are {geometry.size_px} px: "
            f"set data_processing.patches.size_px: {fixed}"
        )
    um = geometry.window_um / geometry.size_px
    if spec.um_per_px and not 0.8 <= um / spec.um_per_px <= 1.25:
        logger.warning(
            "encoder %s was trained at %.2f um/px; the patches are %.2f um/px (window %g um, "
            "%d px): set data_processing.patches.window_um to %g for %d px",
            backbone,
            spec.um_per_px,
            um,
            geometry.window_um,
            geometry.size_px,
            spec.um_per_px * geometry.size_px,
            geometry.size_px,
        )


def fold_job(
    fold_input: ad.AnnData,
    patches: np.ndarray,
    geometry: PatchGeometry,
    cfg: TrainingParams,
    *,
    variant: str,
    backbone: str,
    aux_weight: float,
    fold: int,
    context: bool = False,
) -> tuple[FoldTraining, list[str]]:
    """One variant's training on one fold, set up (model shape, device, checkpoints).

    Returns:
        The job and the fold's auxiliary genes (the model predicts them when
        ``aux_weight > 0``).
    """
    from .devices import resolve_device

    check_encoder_geometry(backbone, geometry)
    aux_genes = [str(g) for g in fold_input.uns["aux_genes"]]
    use_aux = aux_weight > 0 and len(aux_genes) > 0
    spec = ModelSpec.for_backbone(
        backbone,
        n_main=fold_input.n_vars,
        img_size=geometry.size_px,
        n_aux=len(aux_genes) if use_aux else 0,
        aux_weight=aux_weight if use_aux else 0.0,
        depth_weight=cfg.depth_weight,
        context=context,
        depth_detach=cfg.depth_detach,
    )
    job = FoldTraining(
        fold_input,
        patches,
        spec,
        cfg,
        resolve_device(cfg.device, amp=cfg.amp, num_workers=cfg.num_workers, compile=cfg.compile),
        Path(cfg.checkpoint_dir) / f"{variant}_fold{fold}",
        f"{variant} fold {fold}",
        geometry.window_um / geometry.size_px,
        fold_fingerprint(fold_input, patches, spec, geometry, cfg),
    )
    return job, aux_genes


def training_span(started: float) -> dict[str, float]:
    """When a fold's training started and ended (unix seconds) and how long it took
    (``training`` block of the bundle; the MLflow run's start, end and ``train_seconds``)."""
    ended = time.time()
    return {"started_at": started, "ended_at": ended, "train_seconds": ended - started}


def train_fold(
    fold_input: ad.AnnData,
    splits: pd.DataFrame,
    patches: np.ndarray,
    geometry: PatchGeometry,
    cfg: TrainingParams,
    *,
    variant: str,
    backbone: str,
    aux_weight: float,
    fold: int,
    context: bool = False,
) -> tuple[ModelBundle, pd.DataFrame]:
    """Train one variant on one fold: epoch selection on the inner split, then the final model.

    Args:
        fold_input: The fold's model input (``model_inputs`` partition ``fold_<k>``).
        splits: Outer and inner splits (``splits``).
        patches: [N, H, W, 3] uint8 patch store (rows as in ``fold_input.obs["patch_row"]``).
        geometry: How the patches were cut (saved in the bundle for inference).
        cfg: ``model_training`` parameters.

    Returns:
        The bundle (weights, model spec, geometry, panel, target statistics, settings)
        and the training history (one row per stage and epoch).
    """
    from .bundle import bundle_config

    started = time.time()
    job, aux_genes = fold_job(
        fold_input,
        patches,
        geometry,
        cfg,
        variant=variant,
        backbone=backbone,
        aux_weight=aux_weight,
        fold=fold,
        context=context,
    )
    spec, use_aux = job.spec, job.spec.uses_aux
    fold_splits = splits[splits["fold"] == fold]
    inner, history = train_inner_folds(job, fold_splits[fold_splits["inner_fold"] != OUTER])
    curves = [[h["val_mean_r"] for h in r.history] for r in inner]
    best_epoch, best_r = select_epoch(curves, cfg.epochs)
    inner_figures = inner_validation(history, best_epoch)
    if inner:
        logger.info(
            "%s: best epoch %d (inner validation: mean r %.3f, median r %.3f, median partial r "
            "given read depth %.3f)",
            job.label,
            best_epoch,
            best_r,
            inner_figures["inner_val_median_r"],
            inner_figures["inner_val_median_partial_r"],
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
    outer = fold_splits[fold_splits["inner_fold"] == OUTER]
    config = bundle_config(
        variant=variant,
        fold=fold,
        spec=spec,
        geometry=geometry,
        fold_input=fold_input,
        aux_genes=aux_genes if use_aux else [],
        train_patients=sorted(outer.loc[outer["role"] == "train", "patient"].unique().tolist()),
        test_patients=sorted(outer.loc[outer["role"] == "test", "patient"].unique().tolist()),
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
    from .bundle import ModelBundle

    # the checkpoints go once the bundle is written (save_bundle), not before: a kill
    # between this return and the save resumes from them instead of retraining the fold
    bundle = ModelBundle(config=config, state_dict=state, checkpoints=job.checkpoints)
    return bundle, pd.DataFrame(history)
