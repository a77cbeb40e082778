"""Reader for 10x Visium (Space Ranger ``outs/``) sample folders.

Visium: ``<root>/<section>/[outs/]filtered_feature_bc_matrix.h5``,
``spatial/tissue_positions.csv`` (or the headerless ``tissue_positions_list.csv``),
``spatial/scalefactors_json.json``, and the full-resolution image the user gives
(``images: {section: path}``, or the one TIFF / JPEG in the section folder). The pixel
size comes from the scale factors: spot diameter (55 um) / ``spot_diameter_fullres``.
HEST-1k samples (Visium spots in h5ad files) are read by :mod:`brstnet.st.hest`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import pandas as pd

from .acquisition import Source
from .errors import DataError
from .layouts import Layout, ReaderOptions, ReadRequest, read_in_place
from .sections import assemble_section, check_count_matrix

logger = logging.getLogger(__name__)

VISIUM_SPOT_DIAMETER_UM = 55.0
VISIUM_SPOT_PITCH_UM = 100.0
POSITION_NAMES = [
    "barcode",
    "in_tissue",
    "array_row",
    "array_col",
    "pxl_row_in_fullres",
    "pxl_col_in_fullres",
]
IMAGE_SUFFIXES = (".tif", ".tiff", ".btf", ".jpg", ".jpeg", ".png")


def _outs(root: Path, section: str) -> Path:
    folder = root / section
    if (folder / "outs").is_dir():
        folder = folder / "outs"
    if not folder.is_dir():
        raise DataError(f"visium section {section}: folder {root / section} is missing")
    return folder


def visium_sections(root: str | Path) -> list[str]:
    return sorted(
        p.name
        for p in Path(root).iterdir()
        if p.is_dir() and (_outs(Path(root), p.name) / "spatial").is_dir()
    )


def read_positions(spatial: Path, section: str) -> tuple[pd.DataFrame, Path]:
    """Spots under tissue with array and full-resolution pixel coordinates."""
    path = spatial / "tissue_positions.csv"
    if path.is_file():
        table = pd.read_csv(path)
    elif (spatial / "tissue_positions_list.csv").is_file():
        path = spatial / "tissue_positions_list.csv"
        table = pd.read_csv(path, header=None, names=POSITION_NAMES)
    else:
        raise DataError(
            f"visium section {section}: {spatial}/tissue_positions.csv (or tissue_positions_list.csv) is missing"
        )
    missing = [c for c in POSITION_NAMES if c not in table.columns]
    if missing:
        raise DataError(f"visium section {section}: {path} lacks columns {missing}")
    return positions_under_tissue(table.set_index("barcode")), path


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


def _image(folder: Path, section: str, images: dict[str, str]) -> Path:
    if section in images:
        return Path(images[section])
    found = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if len(found) != 1:
        raise DataError(
            f"visium section {section}: give the full-resolution H&E image (data_processing.reader.images."
            f"{section}) or put exactly one image in {folder} (found {len(found)})"
        )
    return found[0]


def read_visium(
    root: str | Path,
    section: str,
    *,
    pixel_size_um: float | None = None,
    spot_diameter_um: float = VISIUM_SPOT_DIAMETER_UM,
    images: dict[str, str] | None = None,
    patients: dict[str, str] | None = None,
    max_unmatched_fraction: float = 0.02,
    spot_pitch_um: float = VISIUM_SPOT_PITCH_UM,
) -> ad.AnnData:
    """One Visium sample into the common AnnData contract."""
    import scanpy as sc

    root = Path(root)
    outs = _outs(root, section)
    matrix = outs / "filtered_feature_bc_matrix.h5"
    if not matrix.is_file():
        raise DataError(f"visium section {section}: count matrix {matrix} is missing")
    counts = sc.read_10x_h5(matrix)
    positions, positions_file = read_positions(outs / "spatial", section)
    scale_path = outs / "spatial" / "scalefactors_json.json"
    if pixel_size_um is None:
        if not scale_path.is_file():
            raise DataError(
                f"visium section {section}: scale factors {scale_path} are missing; give data_processing.pixel_size_um"
            )
        factors = json.loads(scale_path.read_text())
        if "spot_diameter_fullres" not in factors:
            raise DataError(
                f"visium section {section}: {scale_path} lacks spot_diameter_fullres; give data_processing.pixel_size_um"
            )
        pixel_size_um = spot_diameter_um / float(factors["spot_diameter_fullres"])
    patient = (patients or {}).get(section)
    if patient is None:
        logger.warning(
            "visium section %s: no patient given (data_processing.reader.patients); the section counts as its own patient",
            section,
        )
        patient = section
    spot_ids = counts.obs_names.astype(str)
    return assemble_section(
        dataset="visium",
        section=section,
        patient=str(patient),
        spot_ids=pd.Index(spot_ids),
        genes=pd.Index(counts.var_names.astype(str)),
        counts=check_count_matrix(counts.X, matrix, section, pd.Index(spot_ids), counts.var_names),
        positions=positions,
        image=_image(outs.parent if outs.name == "outs" else outs, section, images or {}),
        counts_file=matrix,
        positions_file=positions_file,
        pixel_size_um=pixel_size_um,
        spot_pitch_um=spot_pitch_um,
        spot_diameter_um=spot_diameter_um,
        max_unmatched_fraction=max_unmatched_fraction,
        counts_cover_off_tissue=True,
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
        spot_diameter_um=options.spot_diameter_um or VISIUM_SPOT_DIAMETER_UM,
        images=options.images,
        patients=options.patients,
        max_unmatched_fraction=request.max_unmatched_fraction,
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
