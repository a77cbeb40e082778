"""Reader for the her2st data set (Andersson et al. 2021) in its published layout.

Layout (github.com/almaan/her2st)::

    data/ST-cnts/<section>.tsv.gz              spots ("<x>x<y>") x gene symbols, raw counts
    data/ST-spotfiles/<section>_selection.tsv  x, y, new_x, new_y, pixel_x, pixel_y, selected
    data/ST-imgs/<patient>/<section>/*.jpg     full-resolution H&E

Each section becomes one AnnData: X = raw integer counts (CSR), obs = spot id, array
and pixel coordinates, section, patient; obsm["spatial"] = pixel (x, y); uns = image
path and pixel size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DataError
from .geometry import estimate_pixel_size
from .slides import image_size

logger = logging.getLogger(__name__)

#: Every section of the published data set: patients A-D have 6, E-H have 3.
SECTIONS: tuple[str, ...] = tuple(
    [f"{p}{i}" for p in "ABCD" for i in range(1, 7)]
    + [f"{p}{i}" for p in "EFGH" for i in range(1, 4)]
)
#: The ST arrays used by her2st: 100 um spots, 200 um centre to centre.
SPOT_PITCH_UM = 200.0
SPOT_DIAMETER_UM = 100.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".tif", ".tiff", ".png")
SPOT_FILE_COLUMNS = ("x", "y", "new_x", "new_y", "pixel_x", "pixel_y")


def check_section(section: str) -> str:
    """Return ``section`` if it names a her2st section, else raise listing valid names."""
    if section not in SECTIONS:
        msg = f"unknown her2st section {section!r}; valid sections are {', '.join(SECTIONS)}"
        raise DataError(msg)
    return section


def patient_of(section: str) -> str:
    """her2st patient letter of a section (``"B4"`` -> ``"B"``)."""
    return check_section(section)[0]


def counts_path(section: str) -> str:
    return f"data/ST-cnts/{section}.tsv.gz"


def spots_path(section: str) -> str:
    return f"data/ST-spotfiles/{section}_selection.tsv"


def image_dir(section: str) -> str:
    return f"data/ST-imgs/{patient_of(section)}/{section}"


@dataclass(frozen=True)
class SectionFiles:
    """Paths of one section's raw files."""

    section: str
    counts: Path
    spots: Path
    image: Path


def locate_section(root: str | Path, section: str) -> SectionFiles:
    """Find a section's files under a her2st root folder.

    Raises:
        DataError: unknown section, or a file missing (names it and what to do).
    """
    check_section(section)
    root = Path(root)
    counts, spots = root / counts_path(section), root / spots_path(section)
    for path, what in ((counts, "count matrix"), (spots, "spot file")):
        if not path.is_file():
            msg = (
                f"section {section}: {what} {path} is missing; run the acquisition step "
                "(kedro run --pipelines=data_processing) or copy the her2st repository there"
            )
            raise DataError(msg)
    folder = root / image_dir(section)
    images = (
        sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if folder.is_dir()
        else []
    )
    if len(images) != 1:
        found = (
            "no image" if not images else f"{len(images)} images ({', '.join(map(str, images))})"
        )
        msg = (
            f"section {section}: expected one H&E image in {folder}, found {found}; "
            "put the section's full-resolution image there or remove the section from "
            "data_processing.sections"
        )
        raise DataError(msg)
    return SectionFiles(section=section, counts=counts, spots=spots, image=images[0])


def read_counts(path: Path, section: str) -> tuple[pd.Index, pd.Index, sp.csr_matrix]:
    """Read a her2st count matrix.

    Returns:
        spot ids, gene symbols and an [n_spots, n_genes] int32 CSR matrix.

    Raises:
        DataError: unreadable file, bad spot ids, non-numeric, non-integer or negative counts.
    """
    try:
        frame = pd.read_csv(path, sep="\t", index_col=0)
    except Exception as err:  # pandas raises many types for a corrupt file
        raise DataError(f"section {section}: cannot read count matrix {path}: {err}") from err
    frame.index = frame.index.astype(str)
    bad_ids = ~frame.index.str.fullmatch(r"\d+x\d+")
    if bad_ids.any():
        msg = (
            f"section {section}: count matrix {path} has spot ids not of the form '<x>x<y>' "
            f"(e.g. {list(frame.index[bad_ids][:3])}); rows must be spots, columns genes"
        )
        raise DataError(msg)
    non_numeric = [c for c, t in frame.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if non_numeric:
        msg = f"section {section}: count matrix {path} has non-numeric columns {non_numeric[:5]}; counts must be integers"
        raise DataError(msg)
    values = frame.to_numpy()
    if not np.isfinite(values).all() or (values != np.round(values)).any():
        msg = (
            f"section {section}: count matrix {path} holds non-integer values; "
            "give raw UMI counts, not normalised expression"
        )
        raise DataError(msg)
    if (values < 0).any():
        rows, cols = np.nonzero(values < 0)
        msg = (
            f"section {section}: count matrix {path} holds negative counts "
            f"(spot {frame.index[rows[0]]}, gene {frame.columns[cols[0]]}); counts must be >= 0"
        )
        raise DataError(msg)
    if values.size and values.max() > np.iinfo(np.int32).max:
        raise DataError(f"section {section}: counts in {path} exceed the int32 range")
    return frame.index, frame.columns.astype(str), sp.csr_matrix(values.astype(np.int32))


def read_spot_file(path: Path, section: str) -> pd.DataFrame:
    """Read a her2st spot file, indexed by spot id ``"<x>x<y>"``."""
    try:
        spots = pd.read_csv(path, sep="\t")
    except Exception as err:
        raise DataError(f"section {section}: cannot read spot file {path}: {err}") from err
    missing = [c for c in SPOT_FILE_COLUMNS if c not in spots.columns]
    if missing:
        msg = f"section {section}: spot file {path} lacks columns {missing}; expected {list(SPOT_FILE_COLUMNS)}"
        raise DataError(msg)
    if "selected" in spots.columns:
        spots = spots[spots["selected"].astype(int) == 1]
    spots.index = pd.Index(
        spots["x"].astype(int).astype(str) + "x" + spots["y"].astype(int).astype(str)
    )
    if spots.index.duplicated().any():
        dup = spots.index[spots.index.duplicated()][0]
        raise DataError(f"section {section}: spot file {path} lists spot {dup} twice")
    return spots


def read_section(
    files: SectionFiles,
    *,
    pixel_size_um: float | None = None,
    spot_pitch_um: float = SPOT_PITCH_UM,
    max_unmatched_fraction: float = 0.02,
) -> ad.AnnData:
    """Read one section into AnnData and check that counts, spots and image agree.

    Args:
        files: The section's files (see :func:`locate_section`).
        pixel_size_um: Micrometres per image pixel; None estimates it from the spot grid.
        spot_pitch_um: Physical grid step, used to estimate the pixel size.
        max_unmatched_fraction: The published spot files list a few spots (1-3 per
            section) that have no row in the count matrix; up to this fraction of the
            spot file is dropped with a warning, more is an error.

    Raises:
        DataError: a spot in the counts without a position, too many positions
            without counts, spot centres outside the image, or unreadable files.
    """
    section = files.section
    spot_ids, genes, counts = read_counts(files.counts, section)
    spots = read_spot_file(files.spots, section)

    no_position = spot_ids.difference(spots.index)
    if len(no_position):
        msg = (
            f"section {section}: {len(no_position)} spots in {files.counts} are not in "
            f"{files.spots} (e.g. {list(no_position[:3])}); every counted spot needs a "
            "pixel position: use the spot file that belongs to this count matrix"
        )
        raise DataError(msg)
    no_counts = spots.index.difference(spot_ids)
    if len(no_counts) > max_unmatched_fraction * len(spots):
        msg = (
            f"section {section}: {len(no_counts)} of {len(spots)} spots in {files.spots} "
            f"have no row in {files.counts} (e.g. {list(no_counts[:3])}); the files do not "
            "belong together"
        )
        raise DataError(msg)
    if len(no_counts):
        logger.warning(
            "section %s: %d spot(s) of the spot file have no counts and are dropped: %s",
            section,
            len(no_counts),
            ", ".join(no_counts),
        )
    spots = spots.loc[spot_ids]

    width, height = image_size(files.image, section)
    pixel_xy = spots[["pixel_x", "pixel_y"]].to_numpy(dtype=float)
    outside = (
        (pixel_xy[:, 0] < 0)
        | (pixel_xy[:, 0] >= width)
        | (pixel_xy[:, 1] < 0)
        | (pixel_xy[:, 1] >= height)
    )
    if outside.any():
        first = spots.index[outside][0]
        msg = (
            f"section {section}: {outside.sum()} spot centres in {files.spots} fall outside "
            f"image {files.image} ({width} x {height} px), e.g. spot {first} at "
            f"{tuple(pixel_xy[outside][0])}; check that the image and spot file match"
        )
        raise DataError(msg)

    if pixel_size_um is None:
        pixel_size_um = estimate_pixel_size(
            spots[["new_x", "new_y"]].to_numpy(),
            pixel_xy,
            spot_pitch_um=spot_pitch_um,
            where=f"section {section}",
        )

    obs = pd.DataFrame(
        {
            "spot_id": spot_ids.to_numpy(),
            "array_x": spots["x"].to_numpy(dtype=int),
            "array_y": spots["y"].to_numpy(dtype=int),
            "pixel_x": pixel_xy[:, 0],
            "pixel_y": pixel_xy[:, 1],
            "section": section,
            "patient": patient_of(section),
            "total_counts": np.asarray(counts.sum(axis=1)).ravel().astype(np.int64),
        },
        index=pd.Index([f"{section}_{s}" for s in spot_ids]),
    )
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=genes))
    if not adata.var_names.is_unique:
        logger.warning("section %s: duplicated gene symbols made unique with a suffix", section)
        adata.var_names_make_unique()
    adata.obsm["spatial"] = pixel_xy
    adata.uns["dataset"] = "her2st"
    adata.uns["section"] = section
    adata.uns["patient"] = patient_of(section)
    adata.uns["image_path"] = str(files.image)
    adata.uns["image_size"] = [int(width), int(height)]
    adata.uns["pixel_size_um"] = float(pixel_size_um)
    adata.uns["spot_diameter_um"] = SPOT_DIAMETER_UM
    return adata
