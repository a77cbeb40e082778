"""One pretraining run's settings: the ``pretraining`` parameters at a window store's
geometry, as the loop takes them."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..st.geometry import PatchGeometry
from ..training.augment import ScannerAugmentation
from ..training.optim import LoopConfig
from .params import PretrainingParams

__all__ = ["PretrainConfig"]


@dataclass(frozen=True)
class PretrainConfig:
    """What defines one pretraining run (besides its windows): the ``pretraining``
    parameters of the same names, at the window store's size and pixel size
    (:meth:`from_params`)."""

    backbone: str
    img_size: int
    epochs: int
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-6
    scheduler: str = "cosine"
    method: str = "simclr"
    temperature: float = 0.2
    projection_hidden: int = 512
    projection_dim: int = 128
    crop_scale: float = 0.5
    dihedral: bool = True
    stain_jitter: float = 0.1
    resolution_jitter_um: float | None = None
    blur_sigma_um: float = 0.0
    um_per_px: float | None = None
    seed: int = 0

    @classmethod
    def from_params(cls, params: PretrainingParams, geometry: PatchGeometry) -> PretrainConfig:
        """The run's settings from the validated ``pretraining`` parameters, at the
        window store's geometry (its pixel size scales the scanner views)."""
        names = {f.name for f in fields(cls)} - {"img_size", "um_per_px"}
        return cls(
            img_size=geometry.size_px,
            um_per_px=geometry.window_um / geometry.size_px,
            **params.model_dump(include=names),
        )

    def __post_init__(self) -> None:
        if self.method != "simclr":
            raise ValueError(f"unknown pretraining method {self.method!r}; use simclr")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @property
    def loop(self) -> LoopConfig:
        """The optimiser, schedule and scanner settings as the training loop's (same
        builders, same names)."""
        return LoopConfig.from_params(self, epochs=self.epochs, um_per_px=self.um_per_px)

    @property
    def scanner(self) -> ScannerAugmentation:
        """Stain, resolution and focus augmentation of both views."""
        return self.loop.scanner
