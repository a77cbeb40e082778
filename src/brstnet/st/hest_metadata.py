"""HEST-1k's per-sample metadata json (``metadata/<id>.json``, as HESTData writes it):
its values, where missing ones are bare ``NaN``, null or blank text, the pixel size it
records (only when plausible) and the spot geometry. Read by :mod:`brstnet.st.hest`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from .errors import DataError
from .spaceranger import VISIUM_SPOT_DIAMETER_UM, VISIUM_SPOT_PITCH_UM

logger = logging.getLogger(__name__)

#: Pixel sizes outside this range (um/px) are not believed (HEST's embedded values hold
#: e.g. 0.00047 and 2540).
PLAUSIBLE_PIXEL_SIZE_UM = (0.1, 10.0)
#: Spot diameter and centre-to-centre distance (um) by ``st_technology`` when the json has none.
SPOT_GEOMETRY = {
    "Visium": (VISIUM_SPOT_DIAMETER_UM, VISIUM_SPOT_PITCH_UM),
    "Spatial Transcriptomics": (100.0, 200.0),
}


def missing(value: object) -> bool:
    """None, NaN (the json's bare NaN), or blank text."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in ("", "nan", "none", "null")


def text(value: object) -> str | None:
    """The value as stripped text, or None when missing."""
    return None if missing(value) else str(value).strip()


def number(value: object) -> float | None:
    """The value as a finite float, or None when missing or not a number."""
    if missing(value):
        return None
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def hest_metadata(root: str | Path | None, sample: str) -> dict:
    """The sample's ``metadata/<id>.json`` (bare NaN allowed, as HEST writes it)."""
    if root is None:
        raise DataError(
            f"hest sample {sample}: no data folder given; set data_processing.source.local_dir"
        )
    path = Path(root) / "metadata" / f"{sample}.json"
    if not path.is_file():
        raise DataError(f"hest sample {sample}: metadata {path} is missing")
    return json.loads(path.read_text())


def _plausible(value: float | None) -> bool:
    low, high = PLAUSIBLE_PIXEL_SIZE_UM
    return value is not None and low <= value <= high


def metadata_pixel_size(meta: dict, sample: str) -> float | None:
    """``pixel_size_um_estimated``, else ``pixel_size_um_embedded``, each only if plausible."""
    for key in ("pixel_size_um_estimated", "pixel_size_um_embedded"):
        value = number(meta.get(key))
        if _plausible(value):
            if key == "pixel_size_um_embedded":
                logger.warning(
                    "hest sample %s: no usable pixel_size_um_estimated; using the embedded "
                    "%.4f um/px",
                    sample,
                    value,
                )
            return value
        if value is not None:
            logger.warning(
                "hest sample %s: %s = %s um/px is implausible (outside %s-%s) and ignored",
                sample,
                key,
                value,
                *PLAUSIBLE_PIXEL_SIZE_UM,
            )
    return None


def spot_geometry(meta: dict, sample: str, default_pitch_um: float) -> tuple[float, float]:
    """(spot diameter, centre-to-centre distance) in um: the json's, else the technology's."""
    technology = text(meta.get("st_technology")) or ""
    diameter_default, pitch_default = SPOT_GEOMETRY.get(
        technology, (VISIUM_SPOT_DIAMETER_UM, default_pitch_um)
    )
    diameter = number(meta.get("spot_diameter"))
    pitch = number(meta.get("inter_spot_dist"))
    if diameter is None or pitch is None:
        logger.info(
            "hest sample %s: spot_diameter / inter_spot_dist missing; %s's %.0f / %.0f um used",
            sample,
            technology or "Visium",
            diameter_default,
            pitch_default,
        )
    return diameter or diameter_default, pitch or pitch_default
