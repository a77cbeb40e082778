"""Typed ``data_processing`` parameters: the block becomes a pydantic model at the node
boundary, so a typo or a wrong type fails at start and names the key. ``reader`` is
checked by the chosen dataset's own options model (:mod:`brstnet.st.layouts`)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    SerializeAsAny,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..registry import unknown_name
from ..strict import Strict
from .executors import ExecutorName, cpu_count
from .geometry import PatchGeometry
from .layouts import LayoutOptions
from .readers import datasets, options_for, patient_from_name

__all__ = [
    "DataProcessingParams",
    "PatchParams",
    "QCParams",
    "SourceParams",
    "StainParams",
]


class SourceParams(Strict):
    """Where the raw files come from (``data_processing.source``; see
    :class:`brstnet.st.acquisition.Source`): her2st downloads from ``base_url`` at
    ``commit``, he2020 from ``archive_url``; every layout reads or copies ``local_dir``."""

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


class QCParams(Strict):
    min_total_reads: int = Field(1000, ge=0)
    max_background_fraction: float = Field(0.5, ge=0.0, le=1.0)
    max_unmatched_spot_fraction: float = Field(0.02, ge=0.0, le=1.0)


class StainParams(Strict):
    method: Literal["macenko"] | None = "macenko"
    reference_section: str | None = None  # None: the first section
    reference_window_um: float = Field(1500.0, gt=0)


class PatchParams(Strict):
    window_um: float = Field(150.0, gt=0)
    size_px: int = Field(112, ge=8, le=1024)


class DataProcessingParams(Strict):
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
    # the dataset's own options model (brstnet.st.layouts.LayoutOptions), from a mapping
    reader: SerializeAsAny[LayoutOptions] = Field(default_factory=dict, validate_default=True)
    qc: QCParams = QCParams()
    stain: StainParams = StainParams()
    patches: PatchParams = PatchParams()
    # processes reading sections and cutting them into the patch store at once ("auto": one
    # per core); on Dask (executor dask, or auto under the Dask runner) the cluster decides
    workers: int | Literal["auto"] = "auto"
    executor: ExecutorName = "auto"

    @field_validator("workers")
    @classmethod
    def _at_least_one(cls, workers: int | str) -> int | str:
        if workers != "auto" and workers < 1:
            raise ValueError(f"workers must be 1 or more, or auto, got {workers}")
        return workers

    def worker_count(self) -> int:
        """``workers``, with ``auto`` resolved to the cores this process may use."""
        return cpu_count() if self.workers == "auto" else int(self.workers)

    @field_validator("dataset")
    @classmethod
    def _known_layout(cls, dataset: str) -> str:
        if dataset not in datasets():
            raise ValueError(unknown_name(dataset, datasets(), "dataset"))
        return dataset

    @field_validator("reader", mode="before")
    @classmethod
    def _layout_options(cls, reader: object, info: ValidationInfo) -> LayoutOptions:
        """``reader`` checked by the dataset's own options model (an unknown dataset is
        reported by ``dataset``)."""
        if "dataset" not in info.data:
            return LayoutOptions()
        return options_for(info.data["dataset"], reader)  # type: ignore[arg-type]

    def geometry(self, stain_reference: dict | None) -> PatchGeometry:
        """The patch geometry these settings give, with the fitted stain reference."""
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
        # an unknown section first: it is the cause when the reference is missing too
        for section in self.sections:
            patient_from_name(self.dataset, section, self.reader)
        ref = self.stain.reference_section
        if self.stain.method is not None and ref is not None and ref not in self.sections:
            raise ValueError(
                f"stain.reference_section {ref!r} is not among sections {self.sections}"
            )
        return self
