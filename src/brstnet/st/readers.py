"""One entry per supported data layout: list sections, name their patients, read them.

Every reader returns the same per-section AnnData (see :mod:`brstnet.st.sections`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad

from . import he2020, her2st, visium
from .errors import DataError


@dataclass(frozen=True)
class ReaderOptions:
    """Layout-specific settings (``data_processing.reader``)."""

    gene_map: str | None = None  # he2020: two-column table, Ensembl id -> symbol
    patients: dict[str, str] = field(default_factory=dict)  # visium: section -> patient
    images: dict[str, str] = field(default_factory=dict)  # visium: section -> full-resolution image
    spot_diameter_um: float | None = None  # visium: 55 um unless given


def sections(dataset: str, root: str | Path) -> list[str]:
    """Every section the layout at ``root`` holds."""
    if dataset == "her2st":
        return list(her2st.SECTIONS)
    if dataset == "he2020":
        return list(he2020.metadata(root).index)
    if dataset == "visium":
        return visium.visium_sections(root)
    if dataset == "hest":
        return visium.hest_sections(root)
    raise DataError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")


def patient_of(
    dataset: str, root: str | Path | None, section: str, options: ReaderOptions | None = None
) -> str:
    """The patient of a section, without reading its counts."""
    options = options or ReaderOptions()
    if dataset == "her2st":
        return her2st.patient_of(section)
    if dataset == "he2020":
        meta = he2020.metadata(root)
        if section not in meta.index:
            raise DataError(
                f"unknown he2020 section {section!r}; metadata.csv lists {', '.join(meta.index)}"
            )
        return str(meta.loc[section, "patient"])
    if dataset == "visium":
        return options.patients.get(section, section)
    if dataset == "hest":
        return str(visium.hest_metadata(root, section).get("patient") or section)
    raise DataError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")


def read(
    dataset: str,
    root: str | Path,
    section: str,
    *,
    pixel_size_um: float | None = None,
    spot_pitch_um: float | None = None,
    max_unmatched_fraction: float = 0.02,
    options: ReaderOptions | None = None,
) -> ad.AnnData:
    """Read one section of ``dataset`` laid out as published under ``root``.

    ``pixel_size_um`` None: from the layout (spot grid, scale factors or metadata);
    ``spot_pitch_um`` None: the layout's own (200 um ST arrays, 100 um Visium).
    """
    options = options or ReaderOptions()
    common: dict[str, Any] = {
        "pixel_size_um": pixel_size_um,
        "max_unmatched_fraction": max_unmatched_fraction,
    }
    if dataset == "her2st":
        files = her2st.locate_section(root, section)
        return her2st.read_section(
            files, spot_pitch_um=spot_pitch_um or her2st.SPOT_PITCH_UM, **common
        )
    if dataset == "he2020":
        return he2020.read_section(
            root,
            section,
            spot_pitch_um=spot_pitch_um or he2020.SPOT_PITCH_UM,
            gene_map=options.gene_map,
            **common,
        )
    if dataset == "visium":
        return visium.read_visium(
            root,
            section,
            spot_diameter_um=options.spot_diameter_um or visium.VISIUM_SPOT_DIAMETER_UM,
            images=options.images,
            patients=options.patients,
            **common,
        )
    if dataset == "hest":
        return visium.read_hest(root, section, **common)
    raise DataError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")


DATASETS = ("her2st", "he2020", "visium", "hest")
