"""The ``evaluation`` parameter block, typed (validated at the node boundary; imported
back into :mod:`brstnet.config` with the other blocks)."""

from __future__ import annotations

from pydantic import Field, field_validator

from ..strict import Strict
from .degradations import Condition, conditions

__all__ = ["EvaluationParams", "RobustnessParams"]


class RobustnessParams(Strict):
    """Held-out sections re-cut from degraded copies of their images (brstnet.evaluation.robustness)."""

    enabled: bool = True
    pixel_sizes_um: list[float] = Field(default_factory=lambda: [2.0, 4.0])
    stain_shifts: list[float] = Field(default_factory=lambda: [0.3])
    jpeg_qualities: list[int] = Field(default_factory=lambda: [50])

    @field_validator("pixel_sizes_um", "stain_shifts")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        if any(not (v > 0) for v in values):
            raise ValueError(f"values must be > 0, got {values}")
        return values

    @field_validator("jpeg_qualities")
    @classmethod
    def _quality(cls, values: list[int]) -> list[int]:
        if any(not 1 <= v <= 95 for v in values):
            raise ValueError(f"JPEG qualities are 1-95, got {values}")
        return values

    def conditions(self) -> list[Condition]:
        """The original and the degradations (none when disabled)."""
        if not self.enabled:
            return []
        return conditions(
            pixel_sizes_um=self.pixel_sizes_um,
            stain_shifts=self.stain_shifts,
            jpeg_qualities=self.jpeg_qualities,
        )


class EvaluationParams(Strict):
    device: str = "auto"
    batch_size: int = Field(64, ge=1)
    tta: bool = False  # mean over the 8 flips / rotations (ST-Net)
    alpha: float = Field(0.1, gt=0, lt=1)  # Holm-corrected sign test (ST-Net)
    map_genes: list[str] = Field(default_factory=lambda: ["ERBB2"])  # drawn when in the panel
    n_best_genes: int = Field(3, ge=0)
    robustness: RobustnessParams = RobustnessParams()
