"""Optimisation settings and the optimiser and schedule built from them, shared by the
training loop and the pretraining loop."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from .augment import ScannerAugmentation

__all__ = ["LoopConfig", "make_optimizer", "make_scheduler"]


@dataclass(frozen=True)
class LoopConfig:
    """Optimisation settings (BrST-Net's defaults), under the names of the
    ``model_training`` and ``pretraining`` parameters (:meth:`from_params`)."""

    epochs: int
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-6
    scheduler: str = "cosine"
    dihedral: bool = True
    color_jitter: float = 0.0
    seed: int = 0
    lr_scaling: str = "none"
    lr_reference_batch: int = 32
    stain_jitter: float = 0.0
    resolution_jitter_um: float | None = None
    blur_sigma_um: float = 0.0
    um_per_px: float | None = None  # the patches' (window / size): physical augmentations

    @classmethod
    def from_params(cls, params: Any, *, epochs: int, um_per_px: float | None = None) -> LoopConfig:
        """The loop's settings from validated parameters (``model_training``,
        ``pretraining`` or a :class:`~brstnet.pretraining.run_config.PretrainConfig`): every
        setting of the same name, the rest at their defaults.

        Args:
            params: The parameters (attributes named as this class's fields).
            epochs: How many epochs this fit runs (the epoch selection may shorten it).
            um_per_px: The patches' micrometres per pixel (window / size), for the
                augmentations set in micrometres.
        """
        names = {f.name for f in fields(cls)} - {"epochs", "um_per_px"}
        given = {name: getattr(params, name) for name in names if hasattr(params, name)}
        return cls(epochs=epochs, um_per_px=um_per_px, **given)

    @property
    def scanner(self) -> ScannerAugmentation:
        """Stain, resolution and focus augmentation (:mod:`brstnet.training.augment`)."""
        return ScannerAugmentation(
            self.stain_jitter, self.resolution_jitter_um, self.blur_sigma_um, self.um_per_px
        )

    @property
    def scaled_lr(self) -> float:
        """The learning rate for ``batch_size``: ``lr`` is the rate at ``lr_reference_batch``.

        ``none`` keeps ``lr``; ``linear`` multiplies it by batch / reference (Goyal et al.
        2017, for SGD); ``sqrt`` by its square root (Krizhevsky 2014; Adam-family
        optimisers). BrST-Net's batch 32 is the reference, so its settings are unchanged.
        """
        ratio = self.batch_size / self.lr_reference_batch
        if self.lr_scaling == "none":
            return self.lr
        if self.lr_scaling == "linear":
            return self.lr * ratio
        if self.lr_scaling == "sqrt":
            return self.lr * ratio**0.5
        raise ValueError(f"unknown lr_scaling {self.lr_scaling!r}; use none, linear or sqrt")


def make_optimizer(params, cfg: LoopConfig, *, fused: bool = False) -> torch.optim.Optimizer:
    """SGD or AdamW at :attr:`LoopConfig.scaled_lr`; ``fused``: one kernel for all
    parameters (CUDA)."""
    extra = {"fused": True} if fused else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.scaled_lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            **extra,
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.scaled_lr, weight_decay=cfg.weight_decay, **extra)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use sgd or adamw")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: LoopConfig):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1))
    if cfg.scheduler == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}; use cosine or constant")
