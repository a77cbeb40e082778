"""Typed ``feature_selection`` parameters: the outer and inner splits, the gene panel and
the regression targets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..strict import Strict
from .targets import Smoothing


class InnerSplitParams(Strict):
    scheme: Literal["holdout", "kfold"] = "holdout"
    k: int = Field(4, ge=2)
    val_fraction: float = Field(0.25, gt=0.0, lt=1.0)


class SplitParams(Strict):
    scheme: Literal["lopo", "kfold", "fixed"] = "lopo"
    k: int = Field(5, ge=2)
    test_patients: list[str] = Field(default_factory=list)
    stratify: bool = False  # kfold: balance folds over subtypes (he2020's metadata 'type')
    inner: InnerSplitParams = InnerSplitParams()
    seed: int = 0


class PanelParams(Strict):
    method: Literal["top_mean", "hvg"] = "top_mean"
    n_genes: int = Field(250, ge=1)
    min_detection: float = Field(0.10, ge=0.0, le=1.0)
    aux_max_genes: int | None = Field(None, ge=0)


class TargetParams(Strict):
    # library (the field's: normalize_total to 1e4, log1p) | log1p (BrST-Net) | stnet
    transform: Literal["log1p", "stnet", "library"] = "library"
    zscore: bool = True
    # neighbours: targets averaged over each spot's 3 x 3 grid neighbours (TRIPLEX, DKAN);
    # variants are then named <...>_smooth and every table labels the targets
    smoothing: Smoothing = "none"


class FeatureSelectionParams(Strict):
    split: SplitParams = SplitParams()
    panel: PanelParams = PanelParams()
    targets: TargetParams = TargetParams()
