"""Space Ranger's spot files, shared by the layouts that keep them (:mod:`brstnet.st.visium`,
:mod:`brstnet.st.hest`): the positions table, its hexagonal array grid and the pixel size
fitted to it, checked against the scale factors.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .geometry import estimate_pixel_size

logger = logging.getLogger(__name__)

VISIUM_SPOT_DIAMETER_UM = 55.0
VISIUM_SPOT_PITCH_UM = 100.0
#: ``spot_diameter_fullres`` is the pixel width of this theoretical spot (10x docs).
SCALEFACTOR_SPOT_UM = 65.0
#: Physical length of one array_col and one array_row step of the hexagonal Visium grid.
HEX_STEPS_UM = (VISIUM_SPOT_PITCH_UM / 2, VISIUM_SPOT_PITCH_UM / 2 * math.sqrt(3))
#: Grid fit and scale factors may differ by this much before a warning.
MAX_PIXEL_SIZE_DISAGREEMENT = 0.05
POSITION_NAMES = [
    "barcode",
    "in_tissue",
    "array_row",
    "array_col",
    "pxl_row_in_fullres",
    "pxl_col_in_fullres",
]
GRID_FIT_MAX_SPOTS = 100_000


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
