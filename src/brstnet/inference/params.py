"""Typed ``inference`` parameters: a trained model applied to new slides."""

from __future__ import annotations

from pydantic import Field

from ..strict import Strict


class InferenceParams(Strict):
    model: str  # a bundle folder (data/06_models/<variant>_fold<k>) or runs:/<run id>/model/fold<k>
    slides: dict[str, str] = Field(min_length=1)  # name -> H&E image path
    pixel_size_um: dict[str, float] = Field(
        default_factory=dict
    )  # name -> um/px; else the TIFF tags
    pitch_um: float = Field(200.0, gt=0)
    genes: list[str] = Field(
        default_factory=list
    )  # drawn; empty: ERBB2 and the panel's first genes
    tta: bool = False
    device: str = "auto"
    batch_size: int = Field(64, ge=1)
