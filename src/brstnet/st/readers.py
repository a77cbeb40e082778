"""The registry of data layouts: list sections, name their patients, read and obtain them.

Each dataset module defines a :class:`~brstnet.st.layouts.Layout` as ``LAYOUT`` with its
reader, its options model and its download code. The built-in ones are registered here;
another package adds its own with :func:`register_layout`, or by naming its layout in
the ``brstnet.layouts`` entry-point group (read once, at the first lookup); worker
processes that are not forked see the entry points' layouts, not those registered at run
time. Every reader returns the same per-section AnnData (see :mod:`brstnet.st.sections`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anndata as ad
from tqdm.auto import tqdm

from ..registry import load_plugins, lookup
from . import he2020, her2st, hest, visium
from .errors import DataError
from .executors import each_section
from .layouts import Layout, LayoutOptions, ReadRequest

logger = logging.getLogger(__name__)

__all__ = [
    "ENTRY_POINTS",
    "LAYOUTS",
    "Layout",
    "LayoutOptions",
    "ReadRequest",
    "datasets",
    "get_layout",
    "options_for",
    "patient_from_name",
    "patient_of",
    "read",
    "read_all",
    "register_layout",
    "sections",
]

#: The entry-point group other packages name their layouts in (``name = "pkg.mod:LAYOUT"``).
ENTRY_POINTS = "brstnet.layouts"
#: The registered layouts by name, in registration order (the built-ins first).
LAYOUTS: dict[str, Layout] = {}
#: A layout's settings: its options model, a mapping it checks, or None (its defaults).
Options = LayoutOptions | Mapping[str, Any] | None


def register_layout(layout: Layout) -> Layout:
    """Register ``layout`` under its name (the ``data_processing.dataset`` value).

    Raises:
        ValueError: another layout is registered under that name.
    """
    known = LAYOUTS.get(layout.name)
    if known is not None and known is not layout:
        raise ValueError(f"a layout named {layout.name!r} is registered already")
    LAYOUTS[layout.name] = layout
    return layout


for _builtin in (her2st.LAYOUT, he2020.LAYOUT, visium.LAYOUT, hest.LAYOUT):
    register_layout(_builtin)


def _load_entry_points() -> None:
    """Register the layouts other packages name in :data:`ENTRY_POINTS` (loaded once per
    process, :func:`brstnet.registry.load_plugins`)."""
    for layout in load_plugins(ENTRY_POINTS):
        register_layout(layout)


def datasets() -> tuple[str, ...]:
    """The registered layout names, in registration order."""
    _load_entry_points()
    return tuple(LAYOUTS)


def get_layout(name: str) -> Layout:
    """The layout registered as ``name``.

    Raises:
        DataError: unknown name, listing the registered ones.
    """
    _load_entry_points()
    return lookup(LAYOUTS, name, "dataset", where="data_processing.dataset", error=DataError)


def options_for(dataset: str, values: LayoutOptions | Mapping[str, Any] | None) -> LayoutOptions:
    """``values`` (``data_processing.reader``) as the layout's own options model.

    Raises:
        DataError: unknown dataset, a key the layout does not take (names its keys) or a
            value of the wrong type.
    """
    return get_layout(dataset).parse_options(values)


def sections(dataset: str, root: str | Path) -> list[str]:
    """Every section the layout at ``root`` holds."""
    return get_layout(dataset).sections(Path(root))


def patient_of(dataset: str, root: str | Path | None, section: str, options: Options = None) -> str:
    """The patient of a section, without reading its counts (may read metadata files)."""
    layout = get_layout(dataset)
    return layout.patient_of(
        None if root is None else Path(root), section, layout.parse_options(options)
    )


def patient_from_name(dataset: str, section: str, options: Options = None) -> str | None:
    """The patient of a section from its name and the configuration alone, opening no file.

    Returns:
        The patient, or None where the layout keeps it only in its files (HEST-1k without
        ``data_processing.reader.patients``).

    Raises:
        DataError: unknown dataset, or a name the layout rejects (not a her2st section).
    """
    layout = get_layout(dataset)
    return layout.patient_from_name(section, layout.parse_options(options))


def read(
    dataset: str,
    root: str | Path,
    section: str,
    *,
    pixel_size_um: float | None = None,
    spot_pitch_um: float | None = None,
    max_unmatched_fraction: float = 0.02,
    options: Options = None,
) -> ad.AnnData:
    """Read one section of ``dataset`` laid out as published under ``root``.

    Args:
        dataset: A registered layout (:func:`datasets`).
        root: The folder holding the layout.
        section: The section (sample) name.
        pixel_size_um: Micrometres per image pixel; None: from the layout (spot grid,
            scale factors or metadata).
        spot_pitch_um: Spot centre-to-centre distance; None: the layout's own (200 um ST
            arrays, 100 um Visium).
        max_unmatched_fraction: Spot positions without counts tolerated (dropped with a warning).
        options: The layout's settings: its options model, or a mapping checked by it.

    Raises:
        DataError: unknown dataset, options the layout does not take, or files the layout
            cannot use (names them).
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
            options=layout.parse_options(options),
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
    options: Options = None,
    workers: int = 1,
    executor: str = "processes",
) -> dict[str, ad.AnnData]:
    """:func:`read` for every section, ``workers`` at once (see
    :func:`brstnet.st.executors.each_section`), in the order of ``sections``.

    Raises:
        DataError: the first section that cannot be read (the others not started yet are
            not read).
    """
    options = get_layout(dataset).parse_options(options)  # checked once, before any read
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
    options: Options,
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
