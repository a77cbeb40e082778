"""Reader for He et al. 2020 breast ST (Mendeley Data 29ntw7sh4r v5), as published.

The public zip (:data:`ARCHIVE_URL`) holds one folder, "Human breast cancer in situ
capturing transcriptomics", with ``metadata.csv`` (patient, replicate, type,
histology_image, spot_coordinates, count_matrix, tumor_annotation) next to the files it
names, e.g. for BC23287_C1 (the names are as on disk; their BT / BC prefixes are mixed
within one section):

- ``HE_BT23287_C1.jpg``: the H&E image;
- ``spots_BT23287_C1.csv.gz``: header ``,X,Y``; index "<x>x<y>" (array column x row),
  X, Y = pixel column and row; spots under tissue only;
- ``BC23287_C1_stdata.tsv.gz``: spots "<x>x<y>" (all ~1,000 array spots) x unversioned
  Ensembl gene ids; genes without counts in the section are absent;
- ``BC23287_C1_Coords.tsv.gz``: tumour labels; CR line endings; a header of four names
  (``xcoord``, ``ycoord``, ..., ``tumor``; sometimes with a trailing tab) over rows of five
  fields ``<replicate>_<x>_<y>``, xcoord, ycoord (possibly non-integer), ``L<n>``,
  ``tumor`` / ``non``. The spot is ``round(xcoord)xround(ycoord)`` (ST-Net's
  prepare/spatial.py rounds them the same way); the first field is not the key.

A few spots (1-3 per section) are in the spot file without counts and without a Coords
row; they are dropped (see :func:`brstnet.st.sections.unmatched_tolerance`).
"""

from __future__ import annotations

import gzip
import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .acquisition import Source
from .archives import read_in_place_or_download
from .counts import check_counts, read_count_table
from .errors import DataError
from .genes import read_gene_map, to_symbols
from .layouts import Layout, LayoutOptions, ReadRequest
from .sections import assemble_section

logger = logging.getLogger(__name__)

SPOT_PITCH_UM = 200.0
SPOT_DIAMETER_UM = 100.0
#: The data set's public zip (Mendeley Data 29ntw7sh4r, version 5); no checksum is
#: published, so its first download needs ``source.trust_first_download`` (or a configured
#: ``archive_sha256``) and records one (see :func:`brstnet.st.archives.acquire_archive`).
ARCHIVE_URL = "https://prod-dcd-datasets-cache-zipfiles.s3.eu-west-1.amazonaws.com/29ntw7sh4r-5.zip"
COORDS_FIELDS = ("spot", "xcoord", "ycoord", "label", "tumor")
#: More spots than this without a tumour label means the Coords file was misread.
MAX_UNLABELLED_FRACTION = 0.5
METADATA_COLUMNS = (
    "patient",
    "replicate",
    "type",
    "histology_image",
    "spot_coordinates",
    "count_matrix",
)


class He2020Options(LayoutOptions):
    """he2020's ``data_processing.reader`` settings."""

    gene_map: str | None = None  # a two-column table, Ensembl id -> symbol (else ids are kept)


def metadata(root: str | Path | None) -> pd.DataFrame:
    """metadata.csv indexed by section "<patient>_<replicate>"."""
    if root is None:
        raise DataError(
            "he2020: no data folder given; set data_processing.source.local_dir to the unpacked data set"
        )
    path = Path(root) / "metadata.csv"
    if not path.is_file():
        raise DataError(
            f"he2020: {path} is missing; point data_processing.source.local_dir at the unpacked data set"
        )
    meta = pd.read_csv(path)
    missing = [c for c in METADATA_COLUMNS if c not in meta.columns]
    if missing:
        raise DataError(
            f"he2020: {path} lacks columns {missing}; expected {list(METADATA_COLUMNS)}"
        )
    meta.index = meta["patient"].astype(str) + "_" + meta["replicate"].astype(str)
    return meta


def section_row(meta: pd.DataFrame, section: str) -> pd.Series:
    """The metadata row of ``section``, else a DataError listing the sections there are."""
    if section not in meta.index:
        raise DataError(
            f"unknown he2020 section {section!r}; metadata.csv lists {', '.join(meta.index)}"
        )
    return meta.loc[section]


def patient_of(root: str | Path | None, section: str) -> str:
    """The patient metadata.csv gives a section."""
    return str(section_row(metadata(root), section)["patient"])


def patient_from_name(section: str) -> str | None:
    """The patient in a section name "<patient>_<replicate>" (None without a "_")."""
    patient, sep, _ = section.rpartition("_")
    return patient if sep and patient else None


def _resolve(root: Path, name: str, section: str, what: str) -> Path:
    """The file named in metadata.csv, or the same name with BT / BC swapped."""
    candidates = [name, name.replace("BT", "BC"), name.replace("BC", "BT")]
    for candidate in dict.fromkeys(candidates):
        if (root / candidate).is_file():
            return root / candidate
    raise DataError(
        f"section {section}: {what} {root / name} is missing (also tried the BT/BC variants {candidates[1:]})"
    )


def _spot_grid(index: pd.Index, path: Path, section: str) -> pd.DataFrame:
    parts = index.astype(str).str.extract(r"^(\d+)x(\d+)$")
    if parts.isna().any().any():
        bad = list(index[parts.isna().any(axis=1)][:3])
        raise DataError(
            f"section {section}: spot ids in {path} must look like '<x>x<y>', found {bad}"
        )
    return pd.DataFrame(
        {"array_x": parts[0].astype(int).to_numpy(), "array_y": parts[1].astype(int).to_numpy()},
        index=index.astype(str),
    )


def read_tumor_labels(path: Path, section: str) -> pd.Series:
    """Tumour / non-tumour per spot key "<x>x<y>" from a Coords file.

    The published files have CR line endings and a header of four names over five fields
    per row (see the module docstring); the key is ``round(xcoord)xround(ycoord)`` (half
    to even, as ST-Net's ``int(round(x))``).

    Raises:
        DataError: the file does not have that shape (names the file and what was found).
    """
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    header = [name.strip() for name in lines[0].split("\t") if name.strip()] if lines else []
    if [h.lower() for h in header[:2]] != ["xcoord", "ycoord"] or len(lines) < 2:
        raise DataError(
            f"section {section}: tumour annotation {path} does not look like a He et al. "
            f"Coords file (header {header}; expected xcoord, ycoord, ..., tumor over rows "
            "'<replicate>_<x>_<y>, xcoord, ycoord, L<n>, tumor|non')"
        )
    table = pd.read_csv(
        io.StringIO("\n".join(lines[1:])),
        sep="\t",
        header=None,
        names=list(COORDS_FIELDS),
        index_col=False,
        dtype={"spot": str, "label": str, "tumor": str},
    )
    xy = table[["xcoord", "ycoord"]].apply(pd.to_numeric, errors="coerce")
    if xy.isna().any().any() or table["tumor"].isna().all():
        raise DataError(
            f"section {section}: tumour annotation {path} rows must have five tab-separated "
            f"fields ('<replicate>_<x>_<y>, xcoord, ycoord, L<n>, tumor|non'), found e.g. "
            f"{lines[1].split(chr(9))}"
        )
    keys = [f"{int(x)}x{int(y)}" for x, y in np.rint(xy.to_numpy(dtype=float)).astype(int).tolist()]
    labels = pd.Series(table["tumor"].str.strip().to_numpy(), index=pd.Index(keys), name="tumor")
    if not labels.index.is_unique:
        dup = labels.index[labels.index.duplicated()].unique()
        logger.warning(
            "section %s: %d spot keys occur twice in %s (e.g. %s); the first label is kept",
            section,
            len(dup),
            path,
            ", ".join(dup[:3]),
        )
        labels = labels[~labels.index.duplicated()]
    return labels


def attach_tumor_labels(adata: ad.AnnData, labels: pd.Series, path: Path, section: str) -> None:
    """``obs["tumor"]`` ("tumor" / "non", missing where the Coords file has no row).

    Raises:
        DataError: most spots find no label (the file does not belong to the section).
    """
    keys = adata.obs["array_x"].astype(str) + "x" + adata.obs["array_y"].astype(str)
    found = labels.reindex(keys.to_numpy())
    missing = found.isna()
    if missing.mean() > MAX_UNLABELLED_FRACTION:
        raise DataError(
            f"section {section}: {int(missing.sum())} of {len(found)} spots have no row in the "
            f"tumour annotation {path} (spots are matched on round(xcoord)xround(ycoord), e.g. "
            f"{list(keys[:3])} against {list(labels.index[:3])}); use the Coords file of this section"
        )
    if missing.any():
        logger.warning(
            "section %s: %d spot(s) have no tumour label in %s: %s",
            section,
            int(missing.sum()),
            path,
            ", ".join(keys[missing.to_numpy()]),
        )
    adata.obs["tumor"] = found.to_numpy()


def read_section(request: ReadRequest) -> ad.AnnData:
    """Read one He et al. section ("<patient>_<replicate>") into the common AnnData contract
    (``request.options``: :class:`He2020Options`)."""
    root, section = Path(request.root), request.section
    gene_map = (request.options or He2020Options()).gene_map
    meta = metadata(root)
    row = section_row(meta, section)
    counts_file = _resolve(root, str(row["count_matrix"]), section, "count matrix")
    spots_file = _resolve(root, str(row["spot_coordinates"]), section, "spot file")
    image = _resolve(root, str(row["histology_image"]), section, "H&E image")
    try:
        frame = read_count_table(counts_file)
        spots = pd.read_csv(spots_file, index_col=0)
    except Exception as err:
        raise DataError(
            f"section {section}: cannot read {counts_file} or {spots_file}: {err}"
        ) from err
    if not {"X", "Y"} <= set(spots.columns):
        raise DataError(
            f"section {section}: spot file {spots_file} lacks columns X, Y (pixel column and row)"
        )
    frame.index = frame.index.astype(str)
    _spot_grid(frame.index, counts_file, section)
    positions = _spot_grid(spots.index, spots_file, section).assign(
        pixel_x=spots["X"].to_numpy(dtype=float), pixel_y=spots["Y"].to_numpy(dtype=float)
    )
    ids = frame.columns.astype(str)
    genes = ids
    if gene_map is not None:
        genes = to_symbols(ids, read_gene_map(gene_map), section=section, source=gene_map)
    else:
        logger.info("section %s: no gene_map given; genes keep their Ensembl ids", section)
    adata = assemble_section(
        dataset="he2020",
        section=section,
        patient=str(row["patient"]),
        spot_ids=frame.index,
        genes=genes,
        counts=check_counts(frame, counts_file, section),
        positions=positions,
        image=image,
        counts_file=counts_file,
        positions_file=spots_file,
        pixel_size_um=request.pixel_size_um,
        spot_pitch_um=request.spot_pitch_um,
        spot_diameter_um=SPOT_DIAMETER_UM,
        max_unmatched_fraction=request.max_unmatched_fraction,
        counts_cover_off_tissue=True,
        gene_ids=ids,
    )
    adata.uns["subtype"] = str(row["type"])
    if "tumor_annotation" in meta.columns and pd.notna(row["tumor_annotation"]):
        coords = _resolve(root, str(row["tumor_annotation"]), section, "tumour annotation")
        attach_tumor_labels(adata, read_tumor_labels(coords, section), coords, section)
    return adata


def acquire(sections: Sequence[str], source: Source) -> dict:
    """Read in place from ``source.local_dir``, else download and unpack the public zip
    (``source.archive_url``, :data:`ARCHIVE_URL`) into ``source.raw_dir``: see
    :func:`brstnet.st.archives.read_in_place_or_download`."""
    return read_in_place_or_download(
        "he2020",
        _sections,
        sections,
        source,
        marker="metadata.csv",
        hint=f"; or source.archive_url to download the public zip ({ARCHIVE_URL})",
    )


def _sections(root: Path) -> list[str]:
    return list(metadata(root).index)


LAYOUT = Layout(
    name="he2020",
    spot_pitch_um=SPOT_PITCH_UM,
    sections=_sections,
    read=read_section,
    patient_from_name=lambda section, options: patient_from_name(section),
    patient_of=lambda root, section, options: patient_of(root, section),
    acquire=acquire,
    options=He2020Options,
)
