"""Reader for 10x Visium and Visium HD sample folders (Space Ranger ``outs/``), as published.

A section is a folder under the root: ``<section>/[outs/]`` holding

- the count matrix ``filtered_feature_bc_matrix.h5``, or ``<id>_filtered_feature_bc_matrix.h5``
  as the 10x website names its downloads (read with :func:`scanpy.read_10x_h5`; features
  are named by symbol, their ids kept in ``var["gene_ids"]``);
- ``spatial/tissue_positions.csv`` (Space Ranger >= 2.0, with a header) or
  ``spatial/tissue_positions_list.csv`` (1.x, headerless, though copies with a header
  exist: the first cell tells). One row per array spot (78 x 128 hexagonal grid, 4,992
  spots), off-tissue ones included, possibly at negative pixel coordinates;
- ``spatial/scalefactors_json.json``: ``spot_diameter_fullres`` is the pixel width of a
  theoretical 65 um spot (10x's Space Ranger documentation; the physical spot is 55 um);
- the full-resolution H&E image: ``data_processing.reader.images[section]``, else the one
  image in the section folder (e.g. ``<id>_image.tif``; CytAssist images are skipped).

The pixel size is fitted to the hexagonal array grid (one array_col step is 50 um, one
array_row step 50 * sqrt(3) um) over every spot of the positions file and checked against
the scale factors; they must agree within 5 % or a warning names both.

Visium HD: ``binned_outputs/square_0XXum/`` folders hold the same files per bin size, with
``spatial/tissue_positions.parquet`` and ``microns_per_pixel`` in the scale factors. A
section folder with ``binned_outputs/`` is read at ``data_processing.reader.bin_um``; a bin
folder can also be the section itself. HEST-1k samples are read by :mod:`brstnet.st.hest`.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import pandas as pd
from pydantic import Field

from .counts import check_count_matrix
from .errors import DataError
from .layouts import Layout, LayoutOptions, ReadRequest
from .sections import assemble_section
from .spaceranger import (
    HEX_STEPS_UM,
    VISIUM_SPOT_DIAMETER_UM,
    VISIUM_SPOT_PITCH_UM,
    positions_under_tissue,
    read_positions,
    visium_pixel_size,
)

logger = logging.getLogger(__name__)

COUNTS_FILE = "filtered_feature_bc_matrix.h5"
IMAGE_SUFFIXES = (".tif", ".tiff", ".btf", ".jpg", ".jpeg", ".png")
HD_BINS = "binned_outputs"
HD_BIN = re.compile(r"^square_(\d{3})um$")
#: The CytAssist camera image of the slide (not the H&E) that 10x downloads include.
CYTASSIST_IMAGE = re.compile(r"cytassist_image\.tiff?$", re.IGNORECASE)


class VisiumOptions(LayoutOptions):
    """visium's ``data_processing.reader`` settings.

    Attributes:
        patients: Section -> patient (else the section is its own patient).
        images: Section -> full-resolution image (else the one image in the section folder).
        spot_diameter_um: Recorded spot diameter (55 um; the bin size for Visium HD).
        bin_um: Visium HD: the bin size to read (``binned_outputs/square_0XXum``).
    """

    patients: dict[str, str] = Field(default_factory=dict)
    images: dict[str, str] = Field(default_factory=dict)
    spot_diameter_um: float | None = Field(None, gt=0)
    bin_um: int | None = Field(None, gt=0)


def _sample_folder(root: Path, section: str) -> Path:
    folder = root / section
    if (folder / "outs").is_dir():
        folder = folder / "outs"
    if not folder.is_dir():
        raise DataError(f"visium section {section}: folder {root / section} is missing")
    return folder


def _is_sample(folder: Path) -> bool:
    return any(
        (f / "spatial").is_dir() or (f / HD_BINS).is_dir() for f in (folder, folder / "outs")
    )


def visium_sections(root: str | Path) -> list[str]:
    """The folders under ``root`` that hold a Space Ranger sample (``spatial/`` or ``binned_outputs/``)."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and _is_sample(p))


def hd_bins(folder: Path) -> dict[int, Path]:
    """Bin size (um) -> ``binned_outputs/square_0XXum`` folder of a Visium HD sample."""
    bins = folder / HD_BINS
    found = {}
    for path in sorted(bins.iterdir()) if bins.is_dir() else []:
        match = HD_BIN.match(path.name)
        if match and path.is_dir():
            found[int(match.group(1))] = path
    return found


def _data_folder(folder: Path, section: str, bin_um: int | None) -> tuple[Path, int | None]:
    """The folder with the count matrix and spatial/: the sample, or its chosen HD bin."""
    if (folder / "spatial" / "tissue_positions.parquet").is_file():  # an HD bin folder
        match = HD_BIN.match(folder.name)
        return folder, int(match.group(1)) if match else None
    bins = hd_bins(folder)
    if not bins:
        return folder, None
    listing = ", ".join(f"{HD_BINS}/{p.name}" for p in bins.values())
    if bin_um is None or bin_um not in bins:
        wanted = "" if bin_um is None else f"bin_um = {bin_um} is not among them; "
        raise DataError(
            f"visium section {section}: {folder} is a Visium HD sample with bins {listing}; "
            f"{wanted}set data_processing.reader.bin_um to one of {sorted(bins)} (e.g. 16 for "
            f"{HD_BINS}/square_016um) or point the section at one bin folder"
        )
    return bins[bin_um], bin_um


def _one_file(folder: Path, name: str, section: str, what: str) -> Path:
    """``folder/name``, or the one ``<id>_<name>`` there (10x website downloads)."""
    if (folder / name).is_file():
        return folder / name
    found = sorted(folder.glob(f"*_{name}"))
    if len(found) == 1:
        return found[0]
    raise DataError(
        f"visium section {section}: {what} {folder / name} (or one <id>_{name}) is missing"
        + (f"; found several: {[p.name for p in found]}" if found else "")
    )


def _image(folders: Sequence[Path], section: str, images: dict[str, str]) -> Path:
    if section in images:
        return Path(images[section])
    found = sorted(
        {
            p
            for folder in folders
            if folder.is_dir()
            for p in folder.iterdir()
            if p.is_file()
            and p.suffix.lower() in IMAGE_SUFFIXES
            and not CYTASSIST_IMAGE.search(p.name)
        }
    )
    if len(found) != 1:
        raise DataError(
            f"visium section {section}: give the full-resolution H&E image (data_processing.reader.images."
            f"{section}) or put exactly one image in {folders[0]} (found {[p.name for p in found]})"
        )
    return found[0]


def read_visium(request: ReadRequest) -> ad.AnnData:
    """One Visium (or Visium HD bin) sample into the common AnnData contract.

    ``request.pixel_size_um`` None: fitted to the array grid and checked against the scale
    factors; ``request.spot_pitch_um`` (100 um) sets the grid steps of that fit;
    ``request.options``: :class:`VisiumOptions`.
    """
    import scanpy as sc  # heavy: loaded when a Visium sample is read

    options = request.options or VisiumOptions()
    root, section, pixel_size_um = Path(request.root), request.section, request.pixel_size_um
    spot_pitch_um = request.spot_pitch_um

    sample = _sample_folder(root, section)
    folder, bin_um = _data_folder(sample, section, options.bin_um)
    matrix = _one_file(folder, COUNTS_FILE, section, "count matrix")
    with warnings.catch_warnings():  # shared symbols are reported by assemble_section
        warnings.filterwarnings("ignore", "Variable names are not unique", UserWarning)
        counts = sc.read_10x_h5(matrix)
    table, positions_file = read_positions(folder / "spatial", section)
    scale_path = folder / "spatial" / "scalefactors_json.json"
    factors = json.loads(scale_path.read_text()) if scale_path.is_file() else None
    scale = spot_pitch_um / VISIUM_SPOT_PITCH_UM
    steps = (float(bin_um), float(bin_um)) if bin_um else tuple(s * scale for s in HEX_STEPS_UM)
    if pixel_size_um is None:
        fit_on = table if not bin_um else table[table["in_tissue"].astype(int) == 1]
        pixel_size_um = visium_pixel_size(
            fit_on, factors, steps_um=steps, bin_um=bin_um, section=section, scale_path=scale_path
        )
    patient = options.patients.get(section)
    if patient is None:
        logger.warning(
            "visium section %s: no patient given (data_processing.reader.patients); the section counts as its own patient",
            section,
        )
        patient = section
    spot_ids = pd.Index(counts.obs_names.astype(str))
    gene_ids = counts.var["gene_ids"] if "gene_ids" in counts.var.columns else None
    section_folder = root / section
    return assemble_section(
        dataset="visium",
        section=section,
        patient=str(patient),
        spot_ids=spot_ids,
        genes=pd.Index(counts.var_names.astype(str)),
        counts=check_count_matrix(counts.X, matrix, section, spot_ids, counts.var_names),
        positions=positions_under_tissue(table),
        image=_image([section_folder, sample, folder], section, options.images),
        counts_file=matrix,
        positions_file=positions_file,
        pixel_size_um=pixel_size_um,
        spot_pitch_um=float(bin_um) if bin_um else spot_pitch_um,
        spot_diameter_um=options.spot_diameter_um
        or (float(bin_um) if bin_um else VISIUM_SPOT_DIAMETER_UM),
        max_unmatched_fraction=request.max_unmatched_fraction,
        counts_cover_off_tissue=True,
        gene_ids=gene_ids,
    )


def patient_from_name(section: str, options: VisiumOptions) -> str:
    """``data_processing.reader.patients[section]``; else the section is its own patient."""
    return options.patients.get(section, section)


LAYOUT = Layout(  # read in place from source.local_dir (Space Ranger output is not downloaded)
    name="visium",
    spot_pitch_um=VISIUM_SPOT_PITCH_UM,
    sections=visium_sections,
    read=read_visium,
    patient_from_name=patient_from_name,
    options=VisiumOptions,
)
