"""Typed parameters: each pipeline's parameter block becomes a pydantic model at the
node boundary, so a typo or a wrong type fails at start and names the key."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceParams(_Strict):
    """Where the raw her2st files come from."""

    raw_dir: str = "data/01_raw/her2st"
    local_dir: str | None = "../shared/data/her2st"
    base_url: str | None = "https://raw.githubusercontent.com/almaan/her2st/{commit}"
    commit: str = "85df7411b987a7dec3feff9718b869a7a82091ec"
    timeout_s: float = Field(60.0, gt=0)


class QCParams(_Strict):
    min_total_reads: int = Field(1000, ge=0)
    max_background_fraction: float = Field(0.5, ge=0.0, le=1.0)
    max_unmatched_spot_fraction: float = Field(0.02, ge=0.0, le=1.0)


class StainParams(_Strict):
    method: Literal["macenko"] | None = "macenko"
    reference_section: str | None = None  # None: the first section
    reference_window_um: float = Field(1500.0, gt=0)


class PatchParams(_Strict):
    window_um: float = Field(150.0, gt=0)
    size_px: int = Field(112, ge=8, le=1024)


class DataProcessingParams(_Strict):
    dataset: Literal["her2st"] = "her2st"
    sections: list[str] = Field(
        default_factory=lambda: ["B4", "C2", "C3", "C4", "C5", "C6"], min_length=1
    )
    pixel_size_um: float | Literal["auto"] = "auto"
    spot_pitch_um: float = Field(200.0, gt=0)
    source: SourceParams = SourceParams()
    qc: QCParams = QCParams()
    stain: StainParams = StainParams()
    patches: PatchParams = PatchParams()

    @field_validator("sections")
    @classmethod
    def _unique(cls, sections: list[str]) -> list[str]:
        if len(set(sections)) != len(sections):
            raise ValueError(f"sections are listed twice: {sections}")
        return sections

    @model_validator(mode="after")
    def _reference_in_sections(self) -> DataProcessingParams:
        ref = self.stain.reference_section
        if self.stain.method is not None and ref is not None and ref not in self.sections:
            raise ValueError(
                f"stain.reference_section {ref!r} is not among sections {self.sections}"
            )
        return self


class InnerSplitParams(_Strict):
    scheme: Literal["holdout", "kfold"] = "holdout"
    k: int = Field(4, ge=2)
    val_fraction: float = Field(0.25, gt=0.0, lt=1.0)


class SplitParams(_Strict):
    scheme: Literal["lopo", "kfold", "fixed"] = "lopo"
    k: int = Field(5, ge=2)
    test_patients: list[str] = Field(default_factory=list)
    inner: InnerSplitParams = InnerSplitParams()
    seed: int = 0


class PanelParams(_Strict):
    method: Literal["top_mean", "hvg"] = "top_mean"
    n_genes: int = Field(250, ge=1)
    min_detection: float = Field(0.10, ge=0.0, le=1.0)
    aux_max_genes: int | None = Field(None, ge=0)


class TargetParams(_Strict):
    transform: Literal["log1p", "stnet", "library"] = "log1p"
    zscore: bool = True


class FeatureSelectionParams(_Strict):
    split: SplitParams = SplitParams()
    panel: PanelParams = PanelParams()
    targets: TargetParams = TargetParams()
