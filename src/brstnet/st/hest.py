"""Reader for HEST-1k sample folders (Jaume et al. 2024), as published.

Layout: ``<root>/st/<id>.h5ad`` (spots x genes, obs with Space Ranger's array and
full-resolution pixel columns), ``<root>/wsis/<id>.tif`` (pyramidal H&E) and
``<root>/metadata/<id>.json`` (``pixel_size_um_estimated``, ``patient``,
``spot_diameter``, ``inter_spot_dist``, ...). The patient is known only from the json.
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
from .visium import VISIUM_SPOT_DIAMETER_UM, VISIUM_SPOT_PITCH_UM, positions_under_tissue

logger = logging.getLogger(__name__)


def hest_sections(root: str | Path) -> list[str]:
    """The sample ids with an ``st/<id>.h5ad`` under ``root``."""
    return sorted(p.stem for p in (Path(root) / "st").glob("*.h5ad"))


def hest_metadata(root: str | Path | None, sample: str) -> dict:
    """The sample's ``metadata/<id>.json``."""
    if root is None:
        raise DataError(
            f"hest sample {sample}: no data folder given; set data_processing.source.local_dir"
        )
    path = Path(root) / "metadata" / f"{sample}.json"
    if not path.is_file():
        raise DataError(f"hest sample {sample}: metadata {path} is missing")
    return json.loads(path.read_text())


def patient_from_name(section: str, options: ReaderOptions) -> str | None:
    """``data_processing.reader.patients[section]``; None otherwise (it is in the json)."""
    return options.patients.get(section)


def patient_of(root: str | Path | None, section: str, options: ReaderOptions) -> str:
    """The configured patient, else the metadata json's, else the sample id."""
    configured = patient_from_name(section, options)
    if configured is not None:
        return configured
    return str(hest_metadata(root, section).get("patient") or section)


def read_hest(
    root: str | Path,
    section: str,
    *,
    pixel_size_um: float | None = None,
    max_unmatched_fraction: float = 0.02,
    spot_pitch_um: float = VISIUM_SPOT_PITCH_UM,
    patients: dict[str, str] | None = None,
) -> ad.AnnData:
    """One HEST-1k sample (st/<id>.h5ad, wsis/<id>.tif, metadata/<id>.json).

    ``spot_pitch_um`` is used where the metadata has no ``inter_spot_dist``; ``patients``
    overrides the metadata's patient.
    """
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
    pitch = float(meta.get("inter_spot_dist") or spot_pitch_um)
    patient = (patients or {}).get(section) or meta.get("patient") or section
    spot_ids = pd.Index(data.obs_names.astype(str))
    return assemble_section(
        dataset="hest",
        section=section,
        patient=str(patient),
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


def _read(request: ReadRequest) -> ad.AnnData:
    return read_hest(
        request.root,
        request.section,
        pixel_size_um=request.pixel_size_um,
        max_unmatched_fraction=request.max_unmatched_fraction,
        spot_pitch_um=request.spot_pitch_um,
        patients=request.options.patients,
    )


def acquire(sections: Sequence[str], source: Source) -> dict:
    """Read in place from ``source.local_dir`` (HEST-1k is not downloaded by brstnet)."""
    return read_in_place("hest", hest_sections, sections, source)


LAYOUT = Layout(
    name="hest",
    spot_pitch_um=VISIUM_SPOT_PITCH_UM,
    sections=hest_sections,
    patient_of=patient_of,
    patient_from_name=patient_from_name,
    read=_read,
    acquire=acquire,
)
