"""What a data layout provides: the :class:`Layout` every dataset module defines as
``LAYOUT``, with its own options model (a :class:`LayoutOptions`).

A layout is one published way of storing spatial transcriptomics sections (her2st, He et
al. 2020, Space Ranger, HEST-1k). A dataset module (:mod:`brstnet.st.her2st`, ...) holds
its reader, its options (``data_processing.reader``) and its download code, and defines
one ``LAYOUT = Layout(...)``; :mod:`brstnet.st.readers` registers it by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import DataError

if TYPE_CHECKING:
    import anndata as ad

    from .acquisition import Source


class LayoutOptions(BaseModel):
    """A layout's settings (``data_processing.reader``); this base takes none.

    Each layout with settings subclasses it with its own typed fields.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ReadRequest:
    """One section to read, with the settings every layout's reader takes.

    Attributes:
        root: The folder holding the layout.
        section: The section (sample) name.
        pixel_size_um: Micrometres per image pixel; None: from the layout.
        spot_pitch_um: Spot centre-to-centre distance (the layout's own unless given).
        max_unmatched_fraction: Spot positions without counts tolerated.
        options: The layout's own settings (an instance of its ``Layout.options``).
    """

    root: Path
    section: str
    pixel_size_um: float | None
    spot_pitch_um: float
    max_unmatched_fraction: float
    options: Any = None


@dataclass(frozen=True)
class Layout:
    """One data layout: how to list, name, read and obtain its sections.

    Attributes:
        name: Registry key and ``data_processing.dataset`` value (no ".").
        spot_pitch_um: Default centre-to-centre spot distance (200 um ST, 100 um Visium),
            passed to ``read`` when the user gives none.
        sections: ``sections(root)``: every section the folder ``root`` holds.
        read: ``read(request)``: one section (a :class:`ReadRequest`) as AnnData.
        patient_from_name: ``patient_from_name(section, options)``: the patient from the
            section name and the configuration alone, never reading a file; None when
            the layout cannot tell without its files.
        patient_of: ``patient_of(root, section, options)``: the section's patient; may
            read the layout's metadata files (``root`` may be None where none are needed).
            None: ``patient_from_name`` (a layout that never reads files for it).
        acquire: ``acquire(sections, source)``: put the raw files in place (download,
            copy or check the folder to read in place) and return the raw manifest
            (``dataset``, ``root``, ``sections``, ``obtained``). None: read in place
            (:func:`read_in_place`).
        options: The layout's options model (``data_processing.reader``).
    """

    name: str
    spot_pitch_um: float
    sections: Callable[[Path], list[str]]
    read: Callable[[ReadRequest], ad.AnnData]
    patient_from_name: Callable[[str, Any], str | None]
    patient_of: Callable[[Path | None, str, Any], str] | None = None
    acquire: Callable[[Sequence[str], Source], dict] | None = None
    options: type[LayoutOptions] = LayoutOptions

    def __post_init__(self) -> None:
        if not self.name or "." in self.name:
            raise ValueError(f"layout name {self.name!r} must be non-empty and hold no '.'")
        if self.spot_pitch_um <= 0:
            raise ValueError(f"layout {self.name}: spot_pitch_um must be > 0")
        if self.patient_of is None:
            object.__setattr__(self, "patient_of", partial(_by_name, self.patient_from_name))
        if self.acquire is None:
            object.__setattr__(self, "acquire", partial(read_in_place, self.name, self.sections))

    def parse_options(self, values: LayoutOptions | Mapping[str, Any] | None) -> LayoutOptions:
        """``data_processing.reader`` as this layout's options model.

        A key the layout does not take is an error, unless its value is null or empty
        (as the shared configuration file lists every layout's keys unset).

        Raises:
            DataError: a key the layout does not take (names the valid ones), or a value
                of the wrong type.
        """
        if isinstance(values, self.options):
            return values
        if isinstance(values, BaseModel):
            values = values.model_dump()
        given = {k: v for k, v in (values or {}).items() if v is not None and v != {}}
        fields = self.options.model_fields
        unknown = sorted(k for k in given if k not in fields)
        if unknown:
            valid = ", ".join(fields) if fields else "none"
            raise DataError(
                f"data_processing.reader: dataset {self.name} does not take {unknown}; "
                f"its keys are: {valid}"
            )
        try:
            return self.options.model_validate(given)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()
            )
            raise DataError(f"data_processing.reader ({self.name}): {problems}") from None


def _by_name(
    patient_from_name: Callable[[str, Any], str], root: Path | None, section: str, options: Any
) -> str:
    """``patient_of`` of a layout that tells the patient from the name alone."""
    return patient_from_name(section, options)


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
