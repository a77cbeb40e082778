"""Reader for HEST-1k sample folders (Jaume et al. 2024), as published.

Layout: ``<root>/st/<id>.h5ad`` (spots x genes; obs with Space Ranger's in_tissue,
array_row / array_col and pxl_row / pxl_col_in_fullres), ``<root>/wsis/<id>.tif`` (the
H&E, a pyramidal TIFF written by pyvips: one page per level, 256 px tiles, LZW or JPEG
compressed, decoded through imagecodecs) and ``<root>/metadata/<id>.json`` (HESTData's
metadata: ``dataset_title``, ``patient``, ``st_technology``, ``pixel_size_um_estimated``,
``pixel_size_um_embedded``, ``spot_diameter``, ``inter_spot_dist``, ``subseries``, ...).

The json is written by Python's json module, so missing values are bare ``NaN`` (or null,
or blank text): all of them count as missing here. Rules:

- pixel size: ``pixel_size_um_estimated`` (HEST's own choice), else the embedded one,
  each only when plausible (0.1-10 um/px), else a fit to the spot grid;
- patient: ``data_processing.reader.patients[id]``, else "<dataset_title> / <patient>"
  (labels such as "Patient 1" repeat across studies), else ``reader.blocks[id]`` (a
  tissue block), else "<dataset_title without 'Section <n>'> / no patient": samples of
  one study without a patient are one group, so serial sections of one block never sit on
  both sides of a split;
- genes: HEST keeps He et al.'s samples with Ensembl ids: they are mapped with
  ``reader.gene_map``; a run mixing ids and symbols is refused
  (:func:`brstnet.st.genes.check_gene_names`);
- spots whose centre lies outside the WSI are dropped and reported, as HEST does.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from pydantic import Field

from .counts import check_count_matrix
from .errors import DataError
from .genes import gene_name_kind, read_gene_map, to_symbols
from .geometry import estimate_pixel_size
from .hest_metadata import hest_metadata, metadata_pixel_size, spot_geometry, text
from .layouts import Layout, LayoutOptions, ReadRequest
from .sections import assemble_section
from .spaceranger import (
    HEX_STEPS_UM,
    VISIUM_SPOT_PITCH_UM,
    positions_under_tissue,
)

logger = logging.getLogger(__name__)

SECTION_NUMBER = re.compile(r"\s*\bsection\s*\d+\b", re.IGNORECASE)


class HestOptions(LayoutOptions):
    """hest's ``data_processing.reader`` settings (see the module docstring).

    Attributes:
        patients: Sample -> patient (else the one in the metadata json).
        blocks: Sample -> tissue block, for samples without a patient.
        gene_map: A two-column table, Ensembl id -> symbol, for samples with Ensembl ids.
    """

    patients: dict[str, str] = Field(default_factory=dict)
    blocks: dict[str, str] = Field(default_factory=dict)
    gene_map: str | None = None


def hest_sections(root: str | Path) -> list[str]:
    """The sample ids with an ``st/<id>.h5ad`` under ``root``."""
    return sorted(p.stem for p in (Path(root) / "st").glob("*.h5ad"))


def study(title: str) -> str:
    """A dataset title without its section number ("Human Breast Cancer (Block A Section 1)"
    -> "Human Breast Cancer (Block A)"): the serial sections of one block share it."""
    return re.sub(r"\s+", " ", SECTION_NUMBER.sub("", title)).replace("( ", "(").strip()


def patient_key(meta: dict, sample: str, options: HestOptions) -> str:
    """The group a sample's split follows (see the module docstring for the rules)."""
    configured = options.patients.get(sample)
    if configured is not None:
        return configured
    title, patient = text(meta.get("dataset_title")), text(meta.get("patient"))
    if patient is not None:
        return f"{title} / {patient}" if title else patient
    if sample in options.blocks:
        return options.blocks[sample]
    if title:
        return f"{study(title)} / no patient"
    return sample


def patient_from_name(section: str, options: HestOptions) -> str | None:
    """``reader.patients[section]``; None otherwise (the patient, or its absence that makes
    ``reader.blocks`` apply, is in the json)."""
    return options.patients.get(section)


def patient_of(root: str | Path | None, section: str, options: HestOptions) -> str:
    """The configured patient, else the one :func:`patient_key` finds in the metadata json."""
    configured = patient_from_name(section, options)
    if configured is not None:
        return configured
    return patient_key(hest_metadata(root, section), section, options)


def oriented(positions: pd.DataFrame, section: str) -> pd.DataFrame:
    """array_x along the image's x: HEST's STReader stores a legacy-ST spot "<x>x<y>" with
    array_row = x, so its array axes are swapped against Space Ranger's; they are swapped
    back when array_y, not array_x, follows pixel_x."""
    grid = positions[["array_x", "array_y"]].to_numpy(dtype=float)
    if len(grid) < 3 or np.linalg.matrix_rank(grid - grid.mean(0)) < 2:
        return positions
    coef, *_ = np.linalg.lstsq(
        np.c_[grid, np.ones(len(grid))], positions["pixel_x"].to_numpy(dtype=float), rcond=None
    )
    if abs(coef[1]) <= abs(coef[0]):
        return positions
    logger.info(
        "hest sample %s: array_row runs along the image's x (HEST's legacy-ST layout); "
        "array_x / array_y are taken from array_row / array_col",
        section,
    )
    return positions.rename(columns={"array_x": "array_y", "array_y": "array_x"})


def read_hest(request: ReadRequest) -> ad.AnnData:
    """One HEST-1k sample (st/<id>.h5ad, wsis/<id>.tif, metadata/<id>.json).

    ``request.pixel_size_um`` None: from the metadata (see :func:`metadata_pixel_size`),
    else fitted to the spot grid; ``request.spot_pitch_um`` is used where the metadata has
    no ``inter_spot_dist`` and the technology is unknown; ``request.options``:
    :class:`HestOptions` (``patients``, ``blocks``: see :func:`patient_key`; ``gene_map``).
    """
    options = request.options or HestOptions()
    root, section, pixel_size_um = Path(request.root), request.section, request.pixel_size_um
    h5ad = root / "st" / f"{section}.h5ad"
    if not h5ad.is_file():
        raise DataError(f"hest sample {section}: {h5ad} is missing")
    meta = hest_metadata(root, section)
    data = ad.read_h5ad(h5ad)
    needed = ["array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
    absent = [c for c in needed if c not in data.obs.columns]
    if absent:
        raise DataError(f"hest sample {section}: {h5ad} obs lacks {absent}")
    diameter, pitch = spot_geometry(meta, section, request.spot_pitch_um)
    positions = oriented(positions_under_tissue(data.obs), section)
    if pixel_size_um is None:
        pixel_size_um = metadata_pixel_size(meta, section)
    if pixel_size_um is None:
        hexagonal = (text(meta.get("st_technology")) or "Visium") == "Visium"
        steps = tuple(s * pitch / VISIUM_SPOT_PITCH_UM for s in HEX_STEPS_UM) if hexagonal else None
        try:
            pixel_size_um = estimate_pixel_size(
                positions[["array_x", "array_y"]].to_numpy(dtype=float),
                positions[["pixel_x", "pixel_y"]].to_numpy(dtype=float),
                spot_pitch_um=pitch,
                steps_um=steps,
                where=f"hest sample {section}",
            )
        except DataError as err:
            raise DataError(
                f"hest sample {section}: {root / 'metadata' / (section + '.json')} has no "
                f"plausible pixel_size_um_estimated or pixel_size_um_embedded and {err}"
            ) from err
        logger.warning(
            "hest sample %s: no plausible pixel size in the metadata; %.4f um/px fitted to "
            "the spot grid",
            section,
            pixel_size_um,
        )
    ids = pd.Index(data.var_names.astype(str))
    genes = ids
    if gene_name_kind(ids) == "ensembl" and options.gene_map is not None:
        genes = to_symbols(
            ids, read_gene_map(options.gene_map), section=section, source=options.gene_map
        )
    spot_ids = pd.Index(data.obs_names.astype(str))
    patient = patient_key(meta, section, options)
    adata = assemble_section(
        dataset="hest",
        section=section,
        patient=patient,
        spot_ids=spot_ids,
        genes=genes,
        counts=check_count_matrix(data.X, h5ad, section, spot_ids, data.var_names),
        positions=positions,
        image=root / "wsis" / f"{section}.tif",
        counts_file=h5ad,
        positions_file=h5ad,
        pixel_size_um=float(pixel_size_um),
        spot_pitch_um=pitch,
        spot_diameter_um=diameter,
        max_unmatched_fraction=request.max_unmatched_fraction,
        counts_cover_off_tissue=True,
        drop_outside_image=True,
        gene_ids=ids if genes is not ids else None,
    )
    for key in ("dataset_title", "st_technology", "subseries"):
        value = text(meta.get(key))
        if value is not None:
            adata.uns[key] = value
    return adata


LAYOUT = Layout(  # read in place from source.local_dir (HEST-1k is not downloaded by brstnet)
    name="hest",
    spot_pitch_um=VISIUM_SPOT_PITCH_UM,
    sections=hest_sections,
    read=read_hest,
    patient_from_name=patient_from_name,
    patient_of=patient_of,
    options=HestOptions,
)
