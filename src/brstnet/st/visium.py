"""Readers for 10x Visium (Space Ranger ``outs/``) and HEST-1k sample folders.

Visium: ``<root>/<section>/[outs/]filtered_feature_bc_matrix.h5``,
``spatial/tissue_positions.csv`` (or the headerless ``tissue_positions_list.csv``),
``spatial/scalefactors_json.json``, and the full-resolution image the user gives
(``images: {section: path}``, or the one TIFF / JPEG in the section folder). The pixel
size comes from the scale factors: spot diameter (55 um) / ``spot_diameter_fullres``.

HEST-1k: ``<root>/st/<id>.h5ad``, ``<root>/wsis/<id>.tif`` (pyramidal),
``<root>/metadata/<id>.json`` (``pixel_size_um_estimated``, ``patient``, ...).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anndata as ad
import pandas as pd

from .errors import DataError
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
        spot_pitch_um=VISIUM_SPOT_PITCH_UM,
        spot_diameter_um=spot_diameter_um,
        max_unmatched_fraction=max_unmatched_fraction,
        counts_cover_off_tissue=True,
    )


def hest_sections(root: str | Path) -> list[str]:
    return sorted(p.stem for p in (Path(root) / "st").glob("*.h5ad"))


def hest_metadata(root: str | Path, sample: str) -> dict:
    path = Path(root) / "metadata" / f"{sample}.json"
    if not path.is_file():
        raise DataError(f"hest sample {sample}: metadata {path} is missing")
    return json.loads(path.read_text())


def read_hest(
    root: str | Path,
    section: str,
    *,
    pixel_size_um: float | None = None,
    max_unmatched_fraction: float = 0.02,
) -> ad.AnnData:
    """One HEST-1k sample (st/<id>.h5ad, wsis/<id>.tif, metadata/<id>.json)."""
    root = Path(root)
    h5ad = root / "st" / f"{section}.h5ad"
    if not h5ad.is_file():
        raise DataError(f"hest sample {section}: {h5ad} is missing")
    meta = hest_metadata(root, section)
    if pixel_size_um is None:
        pixel_size_um = meta.get("pixel_size_um_estimated") or meta.get("pixel_size_um_embedded")
        if pixel_size_um is None:
            raise DataError(
                f"hest sample {section}: {root / 'metadata' / (section + '.json')} has no pixel_size_um_estimated; "
                "give data_processing.pixel_size_um"
            )
    data = ad.read_h5ad(h5ad)
    needed = ["array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
    missing = [c for c in needed if c not in data.obs.columns]
    if missing:
        raise DataError(f"hest sample {section}: {h5ad} obs lacks {missing}")
    positions = positions_under_tissue(data.obs)
    diameter = float(meta.get("spot_diameter") or VISIUM_SPOT_DIAMETER_UM)
    pitch = float(meta.get("inter_spot_dist") or VISIUM_SPOT_PITCH_UM)
    spot_ids = pd.Index(data.obs_names.astype(str))
    return assemble_section(
        dataset="hest",
        section=section,
        patient=str(meta.get("patient") or section),
        spot_ids=spot_ids,
        genes=pd.Index(data.var_names.astype(str)),
        counts=check_count_matrix(data.X, h5ad, section, spot_ids, data.var_names),
        positions=positions,
        image=root / "wsis" / f"{section}.tif",
        counts_file=h5ad,
        positions_file=h5ad,
        pixel_size_um=float(pixel_size_um),
        spot_pitch_um=pitch,
        spot_diameter_um=diameter,
        max_unmatched_fraction=max_unmatched_fraction,
        counts_cover_off_tissue=True,
    )
