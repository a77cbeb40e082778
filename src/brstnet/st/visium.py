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
import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .acquisition import Source
from .errors import DataError
from .geometry import estimate_pixel_size
from .layouts import Layout, ReaderOptions, ReadRequest, read_in_place
from .sections import assemble_section, check_count_matrix

logger = logging.getLogger(__name__)

VISIUM_SPOT_DIAMETER_UM = 55.0
VISIUM_SPOT_PITCH_UM = 100.0
#: ``spot_diameter_fullres`` is the pixel width of this theoretical spot (10x docs).
SCALEFACTOR_SPOT_UM = 65.0
#: Physical length of one array_col and one array_row step of the hexagonal Visium grid.
HEX_STEPS_UM = (VISIUM_SPOT_PITCH_UM / 2, VISIUM_SPOT_PITCH_UM / 2 * math.sqrt(3))
#: Grid fit and scale factors may differ by this much before a warning.
MAX_PIXEL_SIZE_DISAGREEMENT = 0.05
COUNTS_FILE = "filtered_feature_bc_matrix.h5"
POSITION_NAMES = [
    "barcode",
    "in_tissue",
    "array_row",
    "array_col",
    "pxl_row_in_fullres",
    "pxl_col_in_fullres",
]
IMAGE_SUFFIXES = (".tif", ".tiff", ".btf", ".jpg", ".jpeg", ".png")
HD_BINS = "binned_outputs"
HD_BIN = re.compile(r"^square_(\d{3})um$")
GRID_FIT_MAX_SPOTS = 100_000
#: The CytAssist camera image of the slide (not the H&E) that 10x downloads include.
CYTASSIST_IMAGE = re.compile(r"cytassist_image\.tiff?$", re.IGNORECASE)


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


def read_positions(spatial: Path, section: str) -> tuple[pd.DataFrame, Path]:
    """Every array spot of the positions file, indexed by barcode, with Space Ranger's
    columns (in_tissue, array_row, array_col, pxl_row_in_fullres, pxl_col_in_fullres)."""
    candidates = ("tissue_positions.parquet", "tissue_positions.csv", "tissue_positions_list.csv")
    path = next((spatial / n for n in candidates if (spatial / n).is_file()), None)
    if path is None:
        raise DataError(
            f"visium section {section}: {spatial}/tissue_positions.csv (or "
            "tissue_positions_list.csv, or tissue_positions.parquet for Visium HD) is missing"
        )
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(path, header=None, dtype=str)
        if str(table.iloc[0, 0]).strip() == "barcode":  # a header, whatever the file's name
            table = table.iloc[1:].set_axis([str(c).strip() for c in table.iloc[0]], axis=1)
        elif table.shape[1] == len(POSITION_NAMES):
            table.columns = POSITION_NAMES
    missing = [c for c in POSITION_NAMES if c not in table.columns]
    if missing:
        raise DataError(f"visium section {section}: {path} lacks columns {missing}")
    table = table.set_index("barcode")
    numeric = table[POSITION_NAMES[1:]].apply(pd.to_numeric, errors="coerce")
    if numeric.isna().any().any():
        raise DataError(f"visium section {section}: {path} holds non-numeric positions")
    return numeric.set_axis(table.index.astype(str)), path


def positions_under_tissue(table: pd.DataFrame) -> pd.DataFrame:
    """Space Ranger's columns (array_row/col, pxl_row/col_in_fullres, in_tissue) as the
    section contract's positions (array_x/y, pixel_x/y), spots under tissue only."""
    if "in_tissue" in table.columns:
        table = table[table["in_tissue"].astype(int) == 1]
    return pd.DataFrame(
        {
            "array_x": table["array_col"].astype(int),
            "array_y": table["array_row"].astype(int),
            "pixel_x": table["pxl_col_in_fullres"].astype(float),
            "pixel_y": table["pxl_row_in_fullres"].astype(float),
        },
        index=table.index.astype(str),
    )


def grid_pixel_size(table: pd.DataFrame, steps_um: tuple[float, float], section: str) -> float:
    """Micrometres per pixel fitted to the array grid of a positions table (every spot)."""
    if len(table) > GRID_FIT_MAX_SPOTS:  # Visium HD bins: an even subsample is plenty
        table = table.iloc[:: int(np.ceil(len(table) / GRID_FIT_MAX_SPOTS))]
    return estimate_pixel_size(
        table[["array_col", "array_row"]].to_numpy(dtype=float),
        table[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=float),
        spot_pitch_um=steps_um[0],
        steps_um=steps_um,
        where=f"visium section {section}",
    )


def scalefactor_pixel_size(factors: dict, *, bin_um: int | None) -> float | None:
    """Micrometres per pixel from the scale factors: ``microns_per_pixel`` (Visium HD), else
    65 um / ``spot_diameter_fullres``; None when neither is there."""
    if factors.get("microns_per_pixel"):
        return float(factors["microns_per_pixel"])
    diameter = factors.get("spot_diameter_fullres")
    if not diameter:
        return None
    spot_um = float(factors.get("bin_size_um") or bin_um or 0) or SCALEFACTOR_SPOT_UM
    return spot_um / float(diameter)


def visium_pixel_size(
    table: pd.DataFrame,
    factors: dict | None,
    *,
    steps_um: tuple[float, float],
    bin_um: int | None,
    section: str,
    scale_path: Path,
) -> float:
    """The grid fit, checked against the scale factors (warning beyond 5 %); the scale
    factors alone where the grid cannot be fitted."""
    from_factors = scalefactor_pixel_size(factors or {}, bin_um=bin_um)
    try:
        fitted = grid_pixel_size(table, steps_um, section)
    except DataError:
        if from_factors is None:
            raise
        return from_factors
    if from_factors is not None and abs(fitted / from_factors - 1) > MAX_PIXEL_SIZE_DISAGREEMENT:
        logger.warning(
            "visium section %s: the array grid gives %.4f um/px but %s gives %.4f um/px "
            "(%.0f %% apart); the grid's value is used. Was the image rescaled after Space "
            "Ranger? Set data_processing.pixel_size_um to override",
            section,
            fitted,
            scale_path,
            from_factors,
            100 * abs(fitted / from_factors - 1),
        )
    return fitted


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


def read_visium(
    root: str | Path,
    section: str,
    *,
    pixel_size_um: float | None = None,
    spot_diameter_um: float | None = None,
    images: dict[str, str] | None = None,
    patients: dict[str, str] | None = None,
    max_unmatched_fraction: float = 0.02,
    bin_um: int | None = None,
    spot_pitch_um: float = VISIUM_SPOT_PITCH_UM,
) -> ad.AnnData:
    """One Visium (or Visium HD bin) sample into the common AnnData contract.

    Args:
        pixel_size_um: None: fitted to the array grid and checked against the scale factors.
        spot_diameter_um: Recorded spot diameter (55 um; the bin size for Visium HD).
        images: Section -> full-resolution image (else the one image in the section folder).
        patients: Section -> patient (else the section is its own patient).
        bin_um: Visium HD: the bin size to read (``binned_outputs/square_0XXum``).
        spot_pitch_um: Centre-to-centre distance of the hexagonal array (100 um), which
            sets the grid steps of the pixel-size fit.
    """
    import scanpy as sc

    root = Path(root)
    sample = _sample_folder(root, section)
    folder, bin_um = _data_folder(sample, section, bin_um)
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
    patient = (patients or {}).get(section)
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
        image=_image([section_folder, sample, folder], section, images or {}),
        counts_file=matrix,
        positions_file=positions_file,
        pixel_size_um=pixel_size_um,
        spot_pitch_um=float(bin_um) if bin_um else spot_pitch_um,
        spot_diameter_um=spot_diameter_um or (float(bin_um) if bin_um else VISIUM_SPOT_DIAMETER_UM),
        max_unmatched_fraction=max_unmatched_fraction,
        counts_cover_off_tissue=True,
        gene_ids=gene_ids,
    )


def patient_from_name(section: str, options: ReaderOptions) -> str:
    """``data_processing.reader.patients[section]``; else the section is its own patient."""
    return options.patients.get(section, section)


def _read(request: ReadRequest) -> ad.AnnData:
    options = request.options
    return read_visium(
        request.root,
        request.section,
        pixel_size_um=request.pixel_size_um,
        spot_diameter_um=options.spot_diameter_um,
        images=options.images,
        patients=options.patients,
        max_unmatched_fraction=request.max_unmatched_fraction,
        bin_um=options.bin_um,
        spot_pitch_um=request.spot_pitch_um,
    )


def acquire(sections: Sequence[str], source: Source) -> dict:
    """Read in place from ``source.local_dir`` (Space Ranger output is not downloaded)."""
    return read_in_place("visium", visium_sections, sections, source)


LAYOUT = Layout(
    name="visium",
    spot_pitch_um=VISIUM_SPOT_PITCH_UM,
    sections=visium_sections,
    patient_of=lambda root, section, options: patient_from_name(section, options),
    patient_from_name=patient_from_name,
    read=_read,
    acquire=acquire,
)
