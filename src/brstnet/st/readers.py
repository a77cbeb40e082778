"""The registry of data layouts: list sections, name their patients, read and obtain them.

Each layout module defines a :class:`~brstnet.st.layouts.Layout` as ``LAYOUT``;
:data:`LAYOUTS` maps ``data_processing.dataset`` names to them. Adding a layout is one
new module plus one line below. Every reader returns the same per-section AnnData (see
:mod:`brstnet.st.sections`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
from tqdm.auto import tqdm

from ..registry import lookup
from . import he2020, her2st, hest, visium
from .errors import DataError
from .executors import each_section
from .layouts import Layout, ReaderOptions, ReadRequest

logger = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "LAYOUTS",
    "Layout",
    "ReadRequest",
    "ReaderOptions",
    "get_layout",
    "patient_from_name",
    "patient_of",
    "read",
    "read_all",
    "sections",
]

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        her2st.LAYOUT,
        he2020.LAYOUT,
        visium.LAYOUT,
        hest.LAYOUT,
    )
}
#: The registered layout names, in registration order.
DATASETS: tuple[str, ...] = tuple(LAYOUTS)


def get_layout(name: str) -> Layout:
    """The layout registered as ``name``.

    Raises:
        DataError: unknown name, listing the registered ones.
    """
    return lookup(LAYOUTS, name, "dataset", where="data_processing.dataset", error=DataError)


def sections(dataset: str, root: str | Path) -> list[str]:
    """Every section the layout at ``root`` holds."""
    return get_layout(dataset).sections(Path(root))


def patient_of(
    dataset: str, root: str | Path | None, section: str, options: ReaderOptions | None = None
) -> str:
    """The patient of a section, without reading its counts (may read metadata files)."""
    return get_layout(dataset).patient_of(
        None if root is None else Path(root), section, options or ReaderOptions()
    )


def patient_from_name(
    dataset: str, section: str, options: ReaderOptions | None = None
) -> str | None:
    """The patient of a section from its name and the configuration alone, opening no file.

    Returns:
        The patient, or None where the layout keeps it only in its files (HEST-1k without
        ``data_processing.reader.patients``).

    Raises:
        DataError: unknown dataset, or a name the layout rejects (not a her2st section).
    """
    return get_layout(dataset).patient_from_name(section, options or ReaderOptions())


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

    Args:
        dataset: A key of :data:`LAYOUTS`.
        root: The folder holding the layout.
        section: The section (sample) name.
        pixel_size_um: Micrometres per image pixel; None: from the layout (spot grid,
            scale factors or metadata).
        spot_pitch_um: Spot centre-to-centre distance; None: the layout's own (200 um ST
            arrays, 100 um Visium).
        max_unmatched_fraction: Spot positions without counts tolerated (dropped with a warning).
        options: Layout-specific settings.

    Raises:
        DataError: unknown dataset, or files the layout cannot use (names them).
    """
    for name, value, fix in (
        (
            "spot_pitch_um",
            spot_pitch_um,
            "to the spots' centre-to-centre distance (200 on ST arrays, 100 on Visium), or "
            "null for the layout's own",
        ),
        ("pixel_size_um", pixel_size_um, "to the image's micrometres per pixel, or auto"),
    ):
        if value is not None and not value > 0:
            raise DataError(
                f"section {section}: {name} must be > 0 micrometres, got {value:g}; set "
                f"data_processing.{name} {fix}"
            )
    layout = get_layout(dataset)
    return layout.read(
        ReadRequest(
            root=Path(root),
            section=section,
            pixel_size_um=pixel_size_um,
            spot_pitch_um=spot_pitch_um if spot_pitch_um is not None else layout.spot_pitch_um,
            max_unmatched_fraction=max_unmatched_fraction,
            options=options or ReaderOptions(),
        )
    )


def read_all(
    dataset: str,
    root: str | Path,
    sections: list[str],
    *,
    pixel_size_um: float | None = None,
    spot_pitch_um: float | None = None,
    max_unmatched_fraction: float = 0.02,
    options: ReaderOptions | None = None,
    workers: int = 1,
    executor: str = "processes",
) -> dict[str, ad.AnnData]:
    """:func:`read` for every section, ``workers`` at once (see
    :func:`brstnet.st.executors.each_section`), in the order of ``sections``.

    Raises:
        DataError: the first section that cannot be read (the others not started yet are
            not read).
    """
    jobs = [
        (dataset, root, section, pixel_size_um, spot_pitch_um, max_unmatched_fraction, options)
        for section in sections
    ]
    out: dict[str, ad.AnnData] = {}
    with tqdm(total=len(sections), desc="read sections", unit="section") as bar:
        for k, adata in each_section(_read_one, jobs, executor=executor, workers=workers):
            out[sections[k]] = adata
            bar.update()
    return {section: out[section] for section in sections}


def _read_one(
    dataset: str,
    root: str | Path,
    section: str,
    pixel_size_um: float | None,
    spot_pitch_um: float | None,
    max_unmatched_fraction: float,
    options: ReaderOptions | None,
) -> ad.AnnData:
    return read(
        dataset,
        root,
        section,
        pixel_size_um=pixel_size_um,
        spot_pitch_um=spot_pitch_um,
        max_unmatched_fraction=max_unmatched_fraction,
        options=options,
    )
