"""Reader for He et al. 2020 breast ST (Mendeley Data 29ntw7sh4r v5), as published.

Layout: ``metadata.csv`` (patient, replicate, type, histology_image, spot_coordinates,
count_matrix, tumor_annotation) next to the files it names:
``HE_<BT|BC><patient>_<replicate>.jpg``, ``spots_<patient>_<replicate>.csv.gz`` (index
"XxY", columns X, Y = pixel column and row, spots under tissue only),
``<patient>_<replicate>_stdata.tsv.gz`` (all ~1,000 array spots x Ensembl ids; genes
with no counts absent) and ``<patient>_<replicate>_Coords.tsv.gz`` (tumour labels; CR
line endings and a header one field short). The BT / BC prefixes of file names do not
always agree with metadata.csv: both are tried.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import pandas as pd

from .acquisition import Source, acquire_archive
from .errors import DataError
from .layouts import Layout, ReadRequest, read_in_place
from .sections import assemble_section, check_counts

logger = logging.getLogger(__name__)

SPOT_PITCH_UM = 200.0
SPOT_DIAMETER_UM = 100.0
METADATA_COLUMNS = (
    "patient",
    "replicate",
    "type",
    "histology_image",
    "spot_coordinates",
    "count_matrix",
)


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


def read_gene_map(path: str | Path) -> dict[str, str]:
    """A two-column table (gene id, symbol), tab- or comma-separated, header optional."""
    table = pd.read_csv(path, sep=None, engine="python", header=None, dtype=str)
    if table.shape[1] < 2:
        raise DataError(f"gene map {path} needs two columns: gene id and symbol")
    if not str(table.iloc[0, 0]).upper().startswith("ENS"):
        table = table.iloc[1:]  # a header row
    return dict(zip(table.iloc[:, 0], table.iloc[:, 1], strict=True))


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


def read_tumor_labels(path: Path) -> pd.Series:
    """Tumour / non-tumour per spot id from a Coords file (CR line endings, short header)."""
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    table = pd.read_csv(io.StringIO(text), sep="\t", index_col=False)
    rows = [line.split("\t") for line in text.strip().split("\n")]
    if (
        len(rows) > 1 and len(rows[1]) == len(rows[0]) + 1
    ):  # header one field short: first field is the id
        table = pd.read_csv(io.StringIO(text), sep="\t")
    label = next(
        (c for c in table.columns if "tumor" in str(c).lower() or "tumour" in str(c).lower()), None
    )
    if label is None:
        raise DataError(
            f"tumour annotation {path} has no tumour column (columns: {list(table.columns)})"
        )
    return table[label].astype(str).set_axis(table.index.astype(str))


def read_section(
    root: str | Path,
    section: str,
    *,
    pixel_size_um: float | None = None,
    spot_pitch_um: float = SPOT_PITCH_UM,
    max_unmatched_fraction: float = 0.02,
    gene_map: str | Path | None = None,
) -> ad.AnnData:
    """Read one He et al. section ("<patient>_<replicate>") into the common AnnData contract."""
    root = Path(root)
    meta = metadata(root)
    row = section_row(meta, section)
    counts_file = _resolve(root, str(row["count_matrix"]), section, "count matrix")
    spots_file = _resolve(root, str(row["spot_coordinates"]), section, "spot file")
    image = _resolve(root, str(row["histology_image"]), section, "H&E image")
    try:
        frame = pd.read_csv(counts_file, sep="\t", index_col=0)
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
    genes = frame.columns.astype(str)
    if gene_map is not None:
        mapping = read_gene_map(gene_map)
        mapped = sum(g in mapping for g in genes)
        genes = pd.Index([mapping.get(g, g) for g in genes])
        logger.info(
            "section %s: %d of %d gene ids mapped to symbols with %s",
            section,
            mapped,
            len(genes),
            gene_map,
        )
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
        pixel_size_um=pixel_size_um,
        spot_pitch_um=spot_pitch_um,
        spot_diameter_um=SPOT_DIAMETER_UM,
        max_unmatched_fraction=max_unmatched_fraction,
        counts_cover_off_tissue=True,
    )
    adata.uns["subtype"] = str(row["type"])
    if "tumor_annotation" in meta.columns and pd.notna(row["tumor_annotation"]):
        labels = read_tumor_labels(
            _resolve(root, str(row["tumor_annotation"]), section, "tumour annotation")
        )
        adata.obs["tumor"] = labels.reindex(adata.obs["spot_id"]).to_numpy()
    return adata


def acquire(sections: Sequence[str], source: Source) -> dict:
    """Read in place from ``source.local_dir``; when that folder does not exist and
    ``source.archive_url`` is set, download and unpack the public zip into ``source.raw_dir``."""
    root, obtained = source.local_dir, "read in place"
    if (root is None or not root.is_dir()) and source.archive_url:
        root = acquire_archive(
            source.archive_url,
            source.raw_dir,
            sha256=source.archive_sha256,
            marker="metadata.csv",
            timeout_s=source.timeout_s,
        )
        obtained = f"downloaded from {source.archive_url}"
    return read_in_place(
        "he2020",
        _sections,
        sections,
        source,
        root=root,
        obtained=obtained,
        hint="; or source.archive_url to download the public zip",
    )


def _sections(root: Path) -> list[str]:
    return list(metadata(root).index)


def _read(request: ReadRequest) -> ad.AnnData:
    return read_section(
        request.root,
        request.section,
        pixel_size_um=request.pixel_size_um,
        spot_pitch_um=request.spot_pitch_um,
        max_unmatched_fraction=request.max_unmatched_fraction,
        gene_map=request.options.gene_map,
    )


LAYOUT = Layout(
    name="he2020",
    spot_pitch_um=SPOT_PITCH_UM,
    sections=_sections,
    patient_of=lambda root, section, options: patient_of(root, section),
    patient_from_name=lambda section, options: patient_from_name(section),
    read=_read,
    acquire=acquire,
)
