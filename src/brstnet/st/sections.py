"""The per-section contract every reader produces, built and checked in one place.

AnnData: X = raw integer counts (CSR int32); obs = spot_id, array_x, array_y, pixel_x,
pixel_y, section, patient, total_counts (indexed "<section>_<spot>"); var indexed by gene
name (``gene_ids`` where the layout has both); obsm["spatial"] = pixel (x, y); uns =
dataset, section, patient, image_path, image_size, pixel_size_um, spot_diameter_um,
gene_names ("symbol" or "ensembl": see :mod:`brstnet.st.genes`), spots_outside_image.

The count tables and matrices a reader passes in are read and checked by
:mod:`brstnet.st.counts`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DataError
from .genes import gene_name_kind
from .geometry import estimate_pixel_size
from .slides import image_size

__all__ = [
    "MAX_UNMATCHED_SPOTS",
    "POSITION_COLUMNS",
    "assemble_section",
    "unmatched_tolerance",
]

logger = logging.getLogger(__name__)

POSITION_COLUMNS = ("array_x", "array_y", "pixel_x", "pixel_y")
#: Spot-file spots without counts tolerated whatever the section's size: the published He
#: et al. and her2st sections list 1-3 such spots, and the smallest has about 256 spots.
MAX_UNMATCHED_SPOTS = 5


def unmatched_tolerance(n_spots: int, max_unmatched_fraction: float) -> int:
    """Spots without counts tolerated in a spot file of ``n_spots``: the larger of
    :data:`MAX_UNMATCHED_SPOTS` and ``max_unmatched_fraction`` of the spots."""
    return max(MAX_UNMATCHED_SPOTS, int(max_unmatched_fraction * n_spots))


def assemble_section(
    *,
    dataset: str,
    section: str,
    patient: str,
    spot_ids: pd.Index,
    genes: pd.Index,
    counts: sp.csr_matrix,
    positions: pd.DataFrame,
    image: Path,
    counts_file: Path,
    positions_file: Path,
    pixel_size_um: float | None,
    spot_pitch_um: float,
    spot_diameter_um: float,
    max_unmatched_fraction: float = 0.02,
    counts_cover_off_tissue: bool = False,
    grid_columns: tuple[str, str] = ("array_x", "array_y"),
    drop_outside_image: bool = False,
    gene_ids: pd.Index | None = None,
) -> ad.AnnData:
    """Match counts to positions, check them against the image, build the AnnData.

    Args:
        positions: Indexed by spot id; columns array_x, array_y, pixel_x, pixel_y (and
            ``grid_columns`` for the pixel-size fit); only spots under tissue.
        counts_cover_off_tissue: The count matrix also holds spots off the tissue (He et
            al., Visium): those are dropped, not an error.
        max_unmatched_fraction: Positions without counts are dropped with a warning up to
            the larger of :data:`MAX_UNMATCHED_SPOTS` and this fraction; more is an error.
        drop_outside_image: Spot centres outside the image are dropped and reported (HEST-1k
            does the same) instead of failing the section.
        gene_ids: Feature ids next to ``genes`` (names), kept as ``var["gene_ids"]``.
    """
    missing = [c for c in POSITION_COLUMNS if c not in positions.columns]
    if missing:
        raise DataError(f"section {section}: spot positions from {positions_file} lack {missing}")
    no_position = spot_ids.difference(positions.index)
    if len(no_position) and not counts_cover_off_tissue:
        msg = (
            f"section {section}: {len(no_position)} spots in {counts_file} are not in "
            f"{positions_file} (e.g. {list(no_position[:3])}); every counted spot needs a "
            "pixel position: use the spot file that belongs to this count matrix"
        )
        raise DataError(msg)
    no_counts = positions.index.difference(spot_ids)
    tolerated = unmatched_tolerance(len(positions), max_unmatched_fraction)
    if len(no_counts) > tolerated:
        msg = (
            f"section {section}: {len(no_counts)} of {len(positions)} spots in {positions_file} "
            f"have no row in {counts_file} (e.g. {list(no_counts[:3])}); at most {tolerated} "
            f"are tolerated (the larger of {MAX_UNMATCHED_SPOTS} spots and "
            f"{max_unmatched_fraction:.0%} of the spot file, data_processing.qc."
            "max_unmatched_spot_fraction): the files do not belong together"
        )
        raise DataError(msg)
    if len(no_counts):
        logger.warning(
            "section %s: %d spot(s) of the spot file have no counts and are dropped: %s",
            section,
            len(no_counts),
            ", ".join(no_counts),
        )
    keep = spot_ids.isin(positions.index)
    if counts_cover_off_tissue and (~keep).any():
        logger.info(
            "section %s: %d counted spots are off the tissue and left out",
            section,
            int((~keep).sum()),
        )
    spot_ids, counts = spot_ids[keep], counts[np.flatnonzero(keep)]
    positions = positions.loc[spot_ids]

    width, height = image_size(image, section)
    pixel_xy = positions[["pixel_x", "pixel_y"]].to_numpy(dtype=float)
    unplaced = ~np.isfinite(pixel_xy).all(axis=1)
    if unplaced.any():
        first = positions.index[unplaced][0]
        raise DataError(
            f"section {section}: {int(unplaced.sum())} spot(s) in {positions_file} have no "
            f"finite pixel position (e.g. spot {first} at {_xy(pixel_xy[unplaced][0])}); "
            "fix or remove those rows of the spot file"
        )
    outside = (
        (pixel_xy[:, 0] < 0)
        | (pixel_xy[:, 0] >= width)
        | (pixel_xy[:, 1] < 0)
        | (pixel_xy[:, 1] >= height)
    )
    n_outside = int(outside.sum())
    if n_outside:
        first = positions.index[outside][0]
        where = (
            f"{n_outside} spot centres in {positions_file} fall outside image {image} "
            f"({width} x {height} px), e.g. spot {first} at {_xy(pixel_xy[outside][0])}"
        )
        if not drop_outside_image or n_outside == len(outside):
            raise DataError(f"section {section}: {where}; check that the image and spot file match")
        logger.warning("section %s: %s; they are dropped", section, where)
        keep = ~outside
        spot_ids, counts = spot_ids[keep], counts[np.flatnonzero(keep)]
        positions, pixel_xy = positions.loc[spot_ids], pixel_xy[keep]
    if pixel_size_um is None:
        pixel_size_um = estimate_pixel_size(
            positions[list(grid_columns)].to_numpy(),
            pixel_xy,
            spot_pitch_um=spot_pitch_um,
            where=f"section {section}",
        )
    obs = pd.DataFrame(
        {
            "spot_id": spot_ids.to_numpy(),
            "array_x": positions["array_x"].to_numpy(dtype=int),
            "array_y": positions["array_y"].to_numpy(dtype=int),
            "pixel_x": pixel_xy[:, 0],
            "pixel_y": pixel_xy[:, 1],
            "section": section,
            "patient": patient,
            "total_counts": np.asarray(counts.sum(axis=1)).ravel().astype(np.int64),
        },
        index=pd.Index([f"{section}_{s}" for s in spot_ids]),
    )
    names = pd.Index(genes.astype(str))
    if not names.is_unique:
        duplicated = names[names.duplicated()].unique()
        logger.warning(
            "section %s: %d gene names are shared by several features (e.g. %s); they are "
            "kept apart with a numbered suffix (anndata's var_names_make_unique)",
            section,
            len(duplicated),
            ", ".join(duplicated[:5]),
        )
        names = ad.utils.make_index_unique(names)
    var = pd.DataFrame(index=names)
    if gene_ids is not None:
        var["gene_ids"] = np.asarray(gene_ids, dtype=str)
    adata = ad.AnnData(X=counts, obs=obs, var=var)
    adata.obsm["spatial"] = pixel_xy
    adata.uns.update(
        dataset=dataset,
        section=section,
        patient=patient,
        image_path=str(image),
        image_size=[int(width), int(height)],
        pixel_size_um=float(pixel_size_um),
        spot_diameter_um=float(spot_diameter_um),
        gene_names=gene_name_kind(genes),
        spots_outside_image=n_outside,
    )
    return adata


def _xy(point: np.ndarray) -> str:
    """``(812.5, nan)``: a pixel position as people read it."""
    return f"({float(point[0]):g}, {float(point[1]):g})"
