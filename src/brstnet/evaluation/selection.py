"""Choosing settings on the inner validation split, never on the held-out patients.

Each candidate (a backbone, an auxiliary weight and ``model_training`` overrides) is
trained exactly as :func:`brstnet.training.folds.train_fold` trains its inner folds,
and is scored at the epoch that fold's selection picks: the median per-gene r and the
median partial r given read depth (the spot's log total count) of the validation
spots. The ridge baseline is fitted and scored on the same inner split, so a candidate
is read against it before any held-out spot is looked at.

A candidate that starts from a self-supervised encoder (``pretrain``) gets one per inner
split, pretrained on that split's training sections' tissue windows only: the inner
validation section's image is never seen, as the held-out patients' slides are not in
the pipeline's pretraining.

Folds without an inner split (a single training section) cannot score settings and are
left out; the table says which folds were used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..features.rows import training_rows, validation_rows
from ..features.splits import OUTER
from ..metrics import partial_pearson_per_gene, pearson_per_gene
from ..metrics.validation import VAL_MEAN_R
from ..training.fold_inputs import FoldData
from ..training.folds import fold_job, train_inner_folds
from ..training.inner import (
    INNER_MEAN_R,
    INNER_MEDIAN_PARTIAL_R,
    INNER_MEDIAN_R,
    inner_validation,
    select_epoch,
)
from ..training.params import TrainingParams, Variant
from .baselines import image_features, ridge

if TYPE_CHECKING:
    import anndata as ad

    from ..st.geometry import PatchGeometry

logger = logging.getLogger(__name__)

#: The figures a candidate is compared by, in the selection table.
SCORES = [INNER_MEDIAN_R, INNER_MEDIAN_PARTIAL_R, INNER_MEAN_R]


@dataclass(frozen=True)
class Candidate:
    """One setting to score: a backbone, its auxiliary weight, spatial context and
    parameter overrides."""

    name: str
    backbone: str = "resnet18"
    aux_weight: float = 1.0
    overrides: dict[str, Any] = field(default_factory=dict)
    context: bool = False
    pretrain: bool = False

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Candidate:
        """From ``{name, backbone?, aux_weight?, context?, pretrain?, overrides?}`` (a YAML
        list entry)."""
        keys = ["name", "backbone", "aux_weight", "context", "pretrain", "overrides"]
        unknown = set(raw) - set(keys)
        if unknown or "name" not in raw:
            raise ValueError(f"a candidate has keys {', '.join(keys)}; got {sorted(raw)}")
        return cls(
            str(raw["name"]),
            str(raw.get("backbone", "resnet18")),
            float(raw.get("aux_weight", 1.0)),
            dict(raw.get("overrides") or {}),
            bool(raw.get("context", False)),
            bool(raw.get("pretrain", False)),
        )


def inner_folds(splits: pd.DataFrame) -> list[int]:
    """The outer folds that have an inner validation split."""
    inner = splits[(splits["inner_fold"] != OUTER) & (splits["role"] == "val")]
    return sorted(int(f) for f in inner["fold"].unique())


def _inner_sections(splits: pd.DataFrame, fold: int) -> list[tuple[list[str], list[str]]]:
    part = splits[(splits["fold"] == fold) & (splits["inner_fold"] != OUTER)]
    return [
        (
            list(rows.loc[rows["role"] == "train", "section"]),
            list(rows.loc[rows["role"] == "val", "section"]),
        )
        for _, rows in part.groupby("inner_fold")
    ]


def _log_depth(fold_input: ad.AnnData, positions: np.ndarray) -> np.ndarray:
    total = fold_input.obs["total_counts"].to_numpy(dtype=np.float64)[positions]
    return np.log(np.maximum(total, 1.0))


def score_candidate(
    candidate: Candidate,
    fold_inputs: dict[int, ad.AnnData],
    splits: pd.DataFrame,
    patches: np.ndarray,
    geometry: PatchGeometry,
    training: dict[str, Any],
    *,
    checkpoint_dir: Path,
    pretrain_encoder: Callable[[list[str], Path], Path] | None = None,
) -> list[dict[str, Any]]:
    """Train ``candidate`` on the inner folds of every fold that has them; one row per fold.

    Args:
        fold_inputs: Outer fold -> its model input.
        training: The run's ``model_training`` parameters; the candidate's overrides
            are applied on top.
        checkpoint_dir: Where the candidate's checkpoints go (a rerun resumes them).
        pretrain_encoder: ``(sections, folder) -> weights file``: pretrains an encoder on
            the sections' tissue windows (:func:`brstnet.pretraining.train.pretrain_sections`
            with the window store and parameters bound); needed by a candidate that
            pretrains.

    Returns:
        Rows with ``candidate``, ``fold``, ``best_epoch`` and :data:`SCORES`.
    """
    if candidate.pretrain and pretrain_encoder is None:
        raise ValueError(f"candidate {candidate.name} pretrains: give pretrain_encoder")
    params = {
        **training,
        **candidate.overrides,
        "checkpoint_dir": str(checkpoint_dir / candidate.name),
    }
    cfg = TrainingParams.model_validate(params)
    rows = []
    for fold in inner_folds(splits):
        fold_splits = splits[(splits["fold"] == fold) & (splits["inner_fold"] != OUTER)]
        results, history = [], []
        for _, part in fold_splits.groupby("inner_fold"):
            fold_cfg = cfg
            if candidate.pretrain:
                sections = sorted(part.loc[part["role"] == "train", "section"].astype(str))
                weights = pretrain_encoder(sections, checkpoint_dir / "pretrained")
                fold_cfg = cfg.model_copy(update={"initial_weights": str(weights)})
            job, _ = fold_job(
                FoldData(fold_inputs[fold], patches, geometry, fold),
                fold_cfg,
                Variant(
                    candidate.name,
                    candidate.backbone,
                    candidate.aux_weight,
                    context=candidate.context,
                ),
            )
            fit, rows_inner = train_inner_folds(job, part)
            results += fit
            history += rows_inner
        epoch, _ = select_epoch(
            [[h[VAL_MEAN_R.name] for h in r.history] for r in results], cfg.epochs
        )
        rows.append(
            {
                "candidate": candidate.name,
                "fold": fold,
                "best_epoch": epoch,
                **inner_validation(history, epoch),
            }
        )
    return rows


def score_ridge(
    fold_inputs: dict[int, ad.AnnData], splits: pd.DataFrame, patches: np.ndarray
) -> list[dict[str, Any]]:
    """The ridge baseline (:mod:`brstnet.evaluation.baselines`) on the same inner splits."""
    rows = []
    for fold in inner_folds(splits):
        fold_input = fold_inputs[fold]
        store_rows = fold_input.obs["patch_row"].to_numpy()
        targets = np.asarray(fold_input.X)
        scores = []
        for train_sections, val_sections in _inner_sections(splits, fold):
            train = training_rows(fold_input, train_sections)
            val = validation_rows(fold_input, val_sections)
            predicted = ridge(
                image_features(np.asarray(patches[store_rows[train]])),
                targets[train],
                image_features(np.asarray(patches[store_rows[val]])),
            )
            r = pearson_per_gene(targets[val], predicted)
            partial = partial_pearson_per_gene(targets[val], predicted, _log_depth(fold_input, val))
            scores.append((np.nanmean(r), np.nanmedian(r), np.nanmedian(partial)))
        mean_r, median_r, median_partial = np.mean(scores, axis=0)
        rows.append(
            {
                "candidate": "baseline_ridge",
                "fold": fold,
                "best_epoch": np.nan,
                INNER_MEDIAN_R: float(median_r),
                INNER_MEDIAN_PARTIAL_R: float(median_partial),
                INNER_MEAN_R: float(mean_r),
            }
        )
    return rows


def selection_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per candidate: its scores averaged over folds, the margin over the ridge
    baseline, sorted best first (by median r, then median partial r)."""
    per_fold = pd.DataFrame(rows)
    table = (
        per_fold.groupby("candidate", sort=False)
        .agg(
            folds=("fold", lambda f: ",".join(str(int(x)) for x in sorted(f))),
            best_epoch=("best_epoch", "mean"),
            **{s: (s, "mean") for s in SCORES},
        )
        .reset_index()
    )
    if "baseline_ridge" in set(table["candidate"]):
        ridge = table.set_index("candidate").loc["baseline_ridge"]
        table["median_r_over_ridge"] = table[INNER_MEDIAN_R] - ridge[INNER_MEDIAN_R]
        table["partial_r_over_ridge"] = (
            table[INNER_MEDIAN_PARTIAL_R] - ridge[INNER_MEDIAN_PARTIAL_R]
        )
    return table.sort_values([INNER_MEDIAN_R, INNER_MEDIAN_PARTIAL_R], ascending=False).reset_index(
        drop=True
    )
