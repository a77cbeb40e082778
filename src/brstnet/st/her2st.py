"""The her2st data set (Andersson et al. 2021) in its published layout: reader and download.

Layout (github.com/almaan/her2st)::

    data/ST-cnts/<section>.tsv.gz              spots ("<x>x<y>") x gene symbols, raw counts
    data/ST-spotfiles/<section>_selection.tsv  x, y, new_x, new_y, pixel_x, pixel_y, selected
    data/ST-imgs/<patient>/<section>/*.jpg     full-resolution H&E

Each section becomes one AnnData: X = raw integer counts (CSR), obs = spot id, array
and pixel coordinates, section, patient; obsm["spatial"] = pixel (x, y); uns = image
path and pixel size.

Downloads fetch exactly the files a run needs from the public repository at a pinned
commit and check each against the sha256 recorded in ``her2st_files.json``
(:func:`brstnet.st.acquisition.fetch_file`). There are no ``data_processing.reader`` settings.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import anndata as ad
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from .acquisition import Source, fetch_file
from .counts import check_counts, read_count_table
from .errors import AcquisitionError, DataError
from .layouts import Layout, ReadRequest
from .sections import assemble_section

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
FILE_KINDS = ("counts", "spots", "image")  # a section's files, in the raw manifest


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
        frame = read_count_table(path)
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
    return frame.index, frame.columns.astype(str), check_counts(frame, path, section)


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
    positions = spots.rename(columns={"x": "array_x", "y": "array_y"})
    return assemble_section(
        dataset="her2st",
        section=section,
        patient=patient_of(section),
        spot_ids=spot_ids,
        genes=genes,
        counts=counts,
        positions=positions,
        image=files.image,
        counts_file=files.counts,
        positions_file=files.spots,
        pixel_size_um=pixel_size_um,
        spot_pitch_um=spot_pitch_um,
        spot_diameter_um=SPOT_DIAMETER_UM,
        max_unmatched_fraction=max_unmatched_fraction,
        grid_columns=("new_x", "new_y"),
    )


def known_files() -> dict:
    """The pinned commit and the sha256 of every file brstnet knows how to fetch."""
    text = resources.files(__package__).joinpath("her2st_files.json").read_text()
    return json.loads(text)


def section_files(section: str, local_dir: Path | None) -> list[str]:
    """Relative paths of the files a section needs (counts, spot file, image)."""
    files = [counts_path(section), spots_path(section)]
    folder = image_dir(section)
    images = [p for p in known_files()["files"] if p.startswith(folder + "/")]
    if not images and local_dir is not None and (local_dir / folder).is_dir():
        images = [
            str(p.relative_to(local_dir))
            for p in sorted((local_dir / folder).iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES
        ]
    if not images:
        msg = (
            f"section {section}: the file name of its H&E image is not recorded in brstnet "
            f"(only {', '.join(sorted({p.split('/')[3] for p in known_files()['files'] if p.startswith('data/ST-imgs')}))} are); "
            f"download it from the her2st repository (github.com/almaan/her2st, {folder}/) "
            f"into the raw folder's {folder}/ yourself, or drop the section"
        )
        raise AcquisitionError(msg)
    return files + images


def acquire(sections: Sequence[str], source: Source) -> dict:
    """Make the raw files of ``sections`` present and verified under ``source.raw_dir``:
    copied from ``source.local_dir`` when it holds them, else downloaded from
    ``source.base_url`` at ``source.commit`` (default: the pinned one).

    Returns:
        A manifest: the root folder, how the files were obtained, and per section the
        relative paths of its counts, spot file and image.
    """
    local = source.local_dir if source.local_dir is not None and source.local_dir.is_dir() else None
    if source.local_dir is not None and local is None:
        logger.info("local her2st copy %s not found; downloading instead", source.local_dir)
    if local is None and not source.base_url:
        msg = (
            "no her2st source: set data_processing.source.local_dir to a copy of the her2st "
            "repository or data_processing.source.base_url to download it"
        )
        raise AcquisitionError(msg)
    pinned = known_files()
    source = replace(source, commit=source.commit or pinned["commit"])
    manifest: dict = {"dataset": "her2st", "root": str(source.raw_dir), "commit": source.commit}
    manifest["sections"] = {}
    fetched = {"present": 0, "copied": 0, "downloaded": 0}
    checked = [check_section(s) for s in sections]
    for section in tqdm(checked, desc="acquire her2st", unit="section"):
        relpaths = section_files(section, local)
        what = f"section {section}"
        for path in relpaths:
            fetched[fetch_file(path, pinned["files"].get(path), source, local, what)] += 1
        manifest["sections"][section] = dict(zip(FILE_KINDS, relpaths, strict=True))
    logger.info(
        "her2st raw files in %s: %d already present, %d copied from %s, %d downloaded",
        source.raw_dir,
        fetched["present"],
        fetched["copied"],
        local,
        fetched["downloaded"],
    )
    manifest["obtained"] = fetched
    return manifest


def read(request: ReadRequest) -> ad.AnnData:
    """The layout's reader: :func:`read_section` of :func:`locate_section`."""
    return read_section(
        locate_section(request.root, request.section),
        pixel_size_um=request.pixel_size_um,
        spot_pitch_um=request.spot_pitch_um,
        max_unmatched_fraction=request.max_unmatched_fraction,
    )


LAYOUT = Layout(
    name="her2st",
    spot_pitch_um=SPOT_PITCH_UM,
    sections=lambda root: list(SECTIONS),  # the published set (the folder is not listed)
    read=read,
    patient_from_name=lambda section, options: patient_of(section),
    acquire=acquire,
)
