"""Typed parameters: each pipeline's parameter block becomes a pydantic model at the
node boundary, so a typo or a wrong type fails at start and names the key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from brstnet.evaluation.params import EvaluationParams, RobustnessParams
from brstnet.features.params import (
    FeatureSelectionParams,
    InnerSplitParams,
    PanelParams,
    SplitParams,
    TargetParams,
)
from brstnet.inference.params import InferenceParams
from brstnet.pretraining.params import PretrainingParams
from brstnet.registry import unknown_name
from brstnet.strict import Strict as _Strict
from brstnet.training.params import TrainingParams, variant_name

__all__ = [
    "DataProcessingParams",
    "EvaluationParams",
    "FeatureSelectionParams",
    "InferenceParams",
    "InnerSplitParams",
    "PanelParams",
    "PretrainingParams",
    "ProjectParams",
    "RobustnessParams",
    "SplitParams",
    "TargetParams",
    "TrainingParams",
    "variant_name",
]

if TYPE_CHECKING:
    from brstnet.st.geometry import PatchGeometry


class SourceParams(_Strict):
    """Where the raw her2st files come from."""

    raw_dir: str = "data/01_raw/her2st"
    local_dir: str | None = "../shared/data/her2st"
    base_url: str | None = "https://raw.githubusercontent.com/almaan/her2st/{commit}"
    commit: str = "85df7411b987a7dec3feff9718b869a7a82091ec"
    timeout_s: float = Field(60.0, gt=0)
    # he2020: the data set's public zip, downloaded (resumable, checksummed) into raw_dir
    # when local_dir does not exist; never by the tests
    archive_url: str | None = None
    archive_sha256: str | None = None
    # an archive without archive_sha256 (or one recorded at an earlier download) is refused
    # unless this is true: then its first download is trusted and its sha256 recorded
    trust_first_download: bool = False
    max_download_gb: float = Field(20.0, gt=0)  # a larger download is refused
    max_unpacked_gb: float = Field(40.0, gt=0)  # an archive unpacking to more is refused


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


class ReaderParams(_Strict):
    """Layout-specific settings (see brstnet.st.readers.ReaderOptions)."""

    gene_map: str | None = None
    patients: dict[str, str] = Field(default_factory=dict)
    images: dict[str, str] = Field(default_factory=dict)
    spot_diameter_um: float | None = Field(None, gt=0)
    bin_um: int | None = Field(None, gt=0)
    blocks: dict[str, str] = Field(default_factory=dict)


class DataProcessingParams(_Strict):
    # her2st: the published repository (downloaded or copied); he2020, visium, hest: read
    # in place from source.local_dir
    dataset: str = "her2st"  # a layout registered in brstnet.st.readers
    sections: list[str] = Field(
        default_factory=lambda: ["B4", "C2", "C3", "C4", "C5", "C6"], min_length=1
    )
    pixel_size_um: float | Literal["auto"] = "auto"
    spot_pitch_um: float | None = Field(
        None, gt=0
    )  # None: the layout's own (ST 200 um, Visium 100 um)
    source: SourceParams = SourceParams()
    reader: ReaderParams = ReaderParams()
    qc: QCParams = QCParams()
    stain: StainParams = StainParams()
    patches: PatchParams = PatchParams()
    # processes reading sections and cutting them into the patch store at once ("auto": one
    # per core); on Dask (executor dask, or auto under the Dask runner) the cluster decides
    workers: int | Literal["auto"] = "auto"
    executor: Literal["auto", "processes", "dask"] = "auto"

    @field_validator("workers")
    @classmethod
    def _at_least_one(cls, workers: int | str) -> int | str:
        if workers != "auto" and workers < 1:
            raise ValueError(f"workers must be 1 or more, or auto, got {workers}")
        return workers

    def worker_count(self) -> int:
        """``workers``, with ``auto`` resolved to the cores this process may use."""
        from brstnet.st.executors import cpu_count

        return cpu_count() if self.workers == "auto" else int(self.workers)

    @field_validator("dataset")
    @classmethod
    def _known_layout(cls, dataset: str) -> str:
        from brstnet.st.readers import DATASETS

        if dataset not in DATASETS:
            raise ValueError(unknown_name(dataset, DATASETS, "dataset"))
        return dataset

    def geometry(self, stain_reference: dict | None) -> PatchGeometry:
        """The patch geometry these settings give, with the fitted stain reference."""
        from brstnet.st.geometry import PatchGeometry

        return PatchGeometry(
            window_um=self.patches.window_um,
            size_px=self.patches.size_px,
            max_background_fraction=self.qc.max_background_fraction,
            stain_reference=stain_reference or {"method": None},
        )

    @field_validator("sections")
    @classmethod
    def _unique(cls, sections: list[str]) -> list[str]:
        if len(set(sections)) != len(sections):
            raise ValueError(f"sections are listed twice: {sections}")
        return sections

    @model_validator(mode="after")
    def _reference_in_sections(self) -> DataProcessingParams:
        from brstnet.st.readers import ReaderOptions, patient_from_name

        # an unknown section first: it is the cause when the reference is missing too
        options = ReaderOptions(**self.reader.model_dump())
        for section in self.sections:
            patient_from_name(self.dataset, section, options)
        ref = self.stain.reference_section
        if self.stain.method is not None and ref is not None and ref not in self.sections:
            raise ValueError(
                f"stain.reference_section {ref!r} is not among sections {self.sections}"
            )
        return self


class ProjectParams(_Strict):
    """Every parameter block of the project: one typed model, validated before a run."""

    data_processing: DataProcessingParams = DataProcessingParams()
    feature_selection: FeatureSelectionParams = FeatureSelectionParams()
    model_training: TrainingParams
    evaluation: EvaluationParams = EvaluationParams()
    inference: InferenceParams | None = None
    pretraining: PretrainingParams = PretrainingParams()

    @model_validator(mode="after")
    def _pretrained_backbones(self) -> ProjectParams:
        training, backbone = self.model_training, self.pretraining.backbone
        other = [b for b in training.backbones if b != backbone]
        if training.init == "pretrained" and other:
            raise ValueError(
                f"model_training.init: pretrained starts every backbone from "
                f"pretraining.backbone {backbone}, but backbones also lists {other}; set "
                f"model_training.backbones: [{backbone}]"
            )
        return self
