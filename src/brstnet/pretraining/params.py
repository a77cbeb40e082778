"""Typed ``pretraining`` parameters: self-supervised encoders on tissue windows."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..models.specs import BACKBONES
from ..registry import unknown_name
from ..strict import Strict


class PretrainingParams(Strict):
    """Self-supervised pretraining on tissue windows (:mod:`brstnet.pretraining`)."""

    backbone: str = "resnet18"  # a name from brstnet.models.BACKBONES
    method: Literal["simclr"] = "simclr"
    # windows: the patch store's geometry, tiled every window_stride_um (null: the window,
    # no overlap), kept at <= data_processing.qc.max_background_fraction background
    window_stride_um: float | None = Field(None, gt=0)
    max_windows: int | None = Field(None, ge=2)  # per fold, drawn with seed; null: all
    # false: fold k pretrains on its training patients' slides only; true: also on its
    # held-out patients' (unlabelled target slides; variants get the suffix _tgt)
    include_target_slides: bool = False
    device: str = "auto"
    amp: bool = True
    compile: bool | Literal["auto"] = "auto"
    num_workers: int | None = Field(None, ge=0)
    seed: int = 0
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=2)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(1e-6, ge=0)
    scheduler: Literal["cosine", "constant"] = "cosine"
    temperature: float = Field(0.2, gt=0)  # NT-Xent tau
    projection_hidden: int = Field(512, ge=1)
    projection_dim: int = Field(128, ge=1)
    # views: random resized crop (smallest area fraction; 1 = off), HED stain jitter,
    # optional resolution / blur (brstnet.training.augment), flips + 90 degree rotations
    crop_scale: float = Field(0.5, gt=0, le=1)
    stain_jitter: float = Field(0.1, ge=0.0, le=1.0)
    resolution_jitter_um: float | None = Field(None, gt=0)
    blur_sigma_um: float = Field(0.0, ge=0.0)
    dihedral: bool = True
    checkpoint_dir: str = "data/06_models/checkpoints"
    # the SSL probe (model_training.ssl_probe): standardise, PCA, ridge (HEST-Bench: 256,
    # fixed penalty 100 / (components x genes) = hest; loo: penalty by leave-one-out)
    probe_pca_dims: int | None = Field(256, ge=1)
    probe_ridge: Literal["hest", "loo"] = "hest"

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, backbone: str) -> str:

        if backbone not in BACKBONES:
            raise ValueError(unknown_name(backbone, sorted(BACKBONES), "backbone"))
        return backbone

    @property
    def tag(self) -> str:
        """Names the weights of one setting: ``<backbone>`` or ``<backbone>_tgt``."""
        return self.backbone + ("_tgt" if self.include_target_slides else "")
