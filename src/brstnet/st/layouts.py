"""What a data layout provides: the :class:`Layout` every layout module defines as ``LAYOUT``.

A layout is one published way of storing spatial transcriptomics sections (her2st, He et
al. 2020, Space Ranger, HEST-1k). Each layout module (:mod:`brstnet.st.her2st`, ...)
defines one ``LAYOUT = Layout(...)``; :mod:`brstnet.st.readers` registers them by name.
Adding a layout is one new module plus one line in ``readers.LAYOUTS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DataError

if TYPE_CHECKING:
    import anndata as ad

    from .acquisition import Source


@dataclass(frozen=True)
class ReaderOptions:
    """Layout-specific settings (``data_processing.reader``)."""

    gene_map: str | None = None  # he2020, hest: two-column table, Ensembl id -> symbol
    patients: dict[str, str] = field(default_factory=dict)  # visium, hest: section -> patient
    images: dict[str, str] = field(default_factory=dict)  # visium: section -> full-resolution image
    spot_diameter_um: float | None = None  # visium: recorded spot diameter (55 um unless given)
    bin_um: int | None = None  # visium HD: bin size to read (binned_outputs/square_0XXum)
    blocks: dict[str, str] = field(default_factory=dict)  # hest: sample -> tissue block


@dataclass(frozen=True)
class ReadRequest:
    """One section to read, with the settings every layout's reader takes.

    Attributes:
        root: The folder holding the layout.
        section: The section (sample) name.
        pixel_size_um: Micrometres per image pixel; None: from the layout.
        spot_pitch_um: Spot centre-to-centre distance (the layout's own unless given).
        max_unmatched_fraction: Spot positions without counts tolerated.
        options: Layout-specific settings.
    """

    root: Path
    section: str
    pixel_size_um: float | None
    spot_pitch_um: float
    max_unmatched_fraction: float
    options: ReaderOptions


@dataclass(frozen=True)
class Layout:
    """One data layout: how to list, name, read and obtain its sections.

    Attributes:
        name: Registry key and ``data_processing.dataset`` value (no ".").
        spot_pitch_um: Default centre-to-centre spot distance (200 um ST, 100 um Visium),
            passed to ``read`` when the user gives none.
        sections: ``sections(root)``: every section the folder ``root`` holds.
        patient_of: ``patient_of(root, section, options)``: the section's patient; may
            read the layout's metadata files (``root`` may be None where none are needed).
        patient_from_name: ``patient_from_name(section, options)``: the patient from the
            section name and the configuration alone, never reading a file; None when
            the layout cannot tell without its files.
        read: ``read(request)``: one section (a :class:`ReadRequest`) as AnnData.
        acquire: ``acquire(sections, source)``: put the raw files in place (download,
            copy or check the folder to read in place) and return the raw manifest
            (``dataset``, ``root``, ``sections``, ``obtained``).
    """

    name: str
    spot_pitch_um: float
    sections: Callable[[Path], list[str]]
    patient_of: Callable[[Path | None, str, ReaderOptions], str]
    patient_from_name: Callable[[str, ReaderOptions], str | None]
    read: Callable[[ReadRequest], ad.AnnData]
    acquire: Callable[[Sequence[str], Source], dict]

    def __post_init__(self) -> None:
        if not self.name or "." in self.name:
            raise ValueError(f"layout name {self.name!r} must be non-empty and hold no '.'")
        if self.spot_pitch_um <= 0:
            raise ValueError(f"layout {self.name}: spot_pitch_um must be > 0")


def read_in_place(
    dataset: str,
    available: Callable[[Path], list[str]],
    sections: Sequence[str],
    source: Source,
    *,
    root: Path | None = None,
    obtained: str = "read in place",
    hint: str = "",
) -> dict:
    """Check that a folder read in place holds ``sections``; return the raw manifest.

    Args:
        dataset: The layout's name (for messages and the manifest).
        available: The layout's ``sections(root)``.
        sections: The configured sections.
        source: Where the data are; ``source.local_dir`` is the folder unless ``root`` is given.
        root: The folder, when the layout found it elsewhere (e.g. an unpacked archive).
        obtained: How the folder came to be there, for the manifest.
        hint: Appended to the error for a missing folder (other ways to obtain it).

    Raises:
        DataError: no such folder (names ``data_processing.source.local_dir``), or
            sections it does not hold (lists those it does).
    """
    root = root if root is not None else source.local_dir
    if root is None or not Path(root).is_dir():
        now = str(source.local_dir) if source.local_dir is not None else None
        raise DataError(
            f"dataset {dataset}: set data_processing.source.local_dir to the folder that "
            f"holds it (now {now!r}){hint}"
        )
    held = set(available(Path(root)))
    unknown = [s for s in sections if s not in held]
    if unknown:
        raise DataError(
            f"dataset {dataset}: sections {unknown} are not in {root}; it holds {sorted(held)}"
        )
    return {
        "dataset": dataset,
        "root": str(root),
        "sections": {s: {} for s in sections},
        "obtained": obtained,
    }
