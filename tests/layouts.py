"""Write real her2st sections in the layouts other data sets are published in.

Each writer keeps the layout's file names, compression and quirks, so that a reader
tested on these files reads the published data unchanged.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
import tifffile
from PIL import Image

Image.MAX_IMAGE_PIXELS = None


def her2st_tables(her2st_dir: Path, section: str) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """Counts (spots x symbols), spot file (under tissue, with counts) and image of a section."""
    counts = pd.read_csv(her2st_dir / f"data/ST-cnts/{section}.tsv.gz", sep="\t", index_col=0)
    spots = pd.read_csv(her2st_dir / f"data/ST-spotfiles/{section}_selection.tsv", sep="\t")
    spots.index = spots["x"].astype(str) + "x" + spots["y"].astype(str)
    spots = spots.loc[spots.index.intersection(counts.index)]
    image = next((her2st_dir / f"data/ST-imgs/{section[0]}/{section}").glob("*.jpg"))
    return counts, spots, image


def ensembl_ids(genes: pd.Index) -> dict[str, str]:
    """A stable Ensembl-style id per symbol (the same in every section)."""
    import hashlib

    return {
        g: f"ENSG{int(hashlib.sha1(g.encode()).hexdigest()[:12], 16) % 10**11:011d}" for g in genes
    }


def off_tissue_spots(spots: pd.DataFrame, n: int = 5) -> list[str]:
    """Array positions next to the tissue that the spot file does not list."""
    taken = set(spots.index)
    out = []
    for x in range(1, 40):
        for y in range(1, 40):
            if f"{x}x{y}" not in taken:
                out.append(f"{x}x{y}")
            if len(out) == n:
                return out
    return out


#: The Coords header: four names over five fields per row. xcoord, ycoord and tumor are the
#: names SpaRED's STNetReader reads after shifting the header one field to the right; the
#: third (over the L<n> labels) is read by position by every public reader (ST-Net's
#: prepare/spatial.py, st_benching's he_common.read_tumor), so its name here is a stand-in.
HE_COORDS_HEADER = ("xcoord", "ycoord", "lab", "tumor")


def he2020_names(patient: str, replicate: str) -> dict[str, str]:
    """The four file names of a section as on disk, e.g. for BC23287_C1 (checked against
    st_benching's RUNBOOK_HE_STNET / he_common.py): HE_BT23287_C1.jpg,
    spots_BT23287_C1.csv.gz, BC23287_C1_stdata.tsv.gz, BC23287_C1_Coords.tsv.gz (BT and
    BC mixed within one section; metadata.csv names them exactly so)."""
    bt = patient.replace("BC", "BT", 1)
    return {
        "histology_image": f"HE_{bt}_{replicate}.jpg",
        "spot_coordinates": f"spots_{bt}_{replicate}.csv.gz",
        "count_matrix": f"{patient}_{replicate}_stdata.tsv.gz",
        "tumor_annotation": f"{patient}_{replicate}_Coords.tsv.gz",
    }


def write_he2020_section(
    root: Path,
    *,
    patient: str,
    replicate: str,
    subtype: str,
    stdata: pd.DataFrame,
    spots: pd.DataFrame,
    coords: pd.DataFrame,
    image: Path | bytes,
    trailing_tab: bool = False,
) -> dict[str, str]:
    """One section in He et al.'s published format; returns its metadata.csv row.

    Args:
        stdata: Counts, index "<x>x<y>" (all array spots, off-tissue ones included),
            columns unversioned Ensembl ids of the genes with counts in this section.
        spots: Index "<x>x<y>" (spots under tissue), columns X, Y (pixel column, row).
        coords: Columns xcoord, ycoord (array units, may be non-integer), label ("L<n>"),
            tumor ("tumor" / "non"), one row per labelled spot.
        trailing_tab: The Coords header ends with a tab (some sections).

    Formats, checked against the public readers: stdata.tsv.gz is a tab-separated table
    with an empty first header cell (ST-Net reads it with ``read_csv(sep="\\t")`` and takes
    the first column as the spot, HEST's STReader drops 'Unnamed: 0'); spots_*.csv.gz has
    the header ",X,Y" (HEST's STReader: ``read_csv(sep=",", index_col=0)``, columns X, Y);
    the Coords file has CR line endings and rows ``<replicate>_<x>_<y>, xcoord, ycoord,
    L<n>, tumor|non`` under four names (ST-Net reads fields 1, 2, 4 and rounds 1, 2;
    he_common.read_tumor splits on CR). The first field's numbers are the coordinates
    truncated, so a reader keyed on it misreads the non-integer rows.
    """
    root.mkdir(parents=True, exist_ok=True)
    names = he2020_names(patient, replicate)
    with gzip.open(root / names["count_matrix"], "wt", newline="") as handle:
        stdata.to_csv(handle, sep="\t", lineterminator="\n")
    with gzip.open(root / names["spot_coordinates"], "wt", newline="") as handle:
        spots[["X", "Y"]].to_csv(handle, lineterminator="\n")
    header = "\t".join(HE_COORDS_HEADER) + ("\t" if trailing_tab else "")
    rows = [
        f"{replicate}_{int(x)}_{int(y)}\t{x:g}\t{y:g}\t{lab}\t{tumor}"
        for x, y, lab, tumor in coords[["xcoord", "ycoord", "label", "tumor"]].itertuples(
            index=False
        )
    ]
    (root / names["tumor_annotation"]).write_bytes(
        gzip.compress(("\r".join([header, *rows]) + "\r").encode())
    )
    target = root / names["histology_image"]
    target.write_bytes(image if isinstance(image, bytes) else Path(image).read_bytes())
    return {"patient": patient, "replicate": replicate, "type": subtype, **names}


#: metadata.csv's seven columns (SpaRED's STNetReader and st_benching's download_he.py
#: read them by name).
HE_METADATA_COLUMNS = (
    "patient",
    "replicate",
    "type",
    "histology_image",
    "spot_coordinates",
    "count_matrix",
    "tumor_annotation",
)


def write_he2020_metadata(root: Path, rows: list[dict[str, str]]) -> None:
    """metadata.csv (:data:`HE_METADATA_COLUMNS`), file names exactly as on disk."""
    pd.DataFrame(rows, columns=list(HE_METADATA_COLUMNS)).to_csv(root / "metadata.csv", index=False)


def he2020_coords(spots: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Coords rows for ``spots`` (index "<x>x<y>"): some coordinates off the integer grid by
    a few hundredths (round() still gives the spot), labels L1-L3, every third spot tumour."""
    rng = np.random.default_rng(seed)
    xy = np.array([[int(v) for v in key.split("x")] for key in spots.index], dtype=float)
    jitter = np.where(rng.random(xy.shape) < 0.3, rng.choice([-0.04, 0.03, 0.02], xy.shape), 0)
    return pd.DataFrame(
        {
            "xcoord": np.round(xy[:, 0] + jitter[:, 0], 2),
            "ycoord": np.round(xy[:, 1] + jitter[:, 1], 2),
            "label": [f"L{1 + i % 3}" for i in range(len(xy))],
            "tumor": np.where(np.arange(len(xy)) % 3 == 0, "tumor", "non"),
        },
        index=spots.index,
    )


HE_GENES = {  # real unversioned ids of the symbols tests.synthetic uses, plus one never counted
    "ENSG00000141736": "ERBB2",
    "ENSG00000141738": "GRB7",
    "ENSG00000075624": "ACTB",
    "ENSG00000171345": "KRT19",
    "ENSG00000198804": "MT-CO1",
    "ENSG00000111640": "GAPDH",
}


def tiny_he2020_section(
    root: Path,
    *,
    patient: str,
    replicate: str,
    seed: int,
    grid: tuple[int, int] = (16, 16),
    pitch_px: float = 24.0,
    n_without_counts: int = 3,
    trailing_tab: bool = False,
) -> tuple[dict[str, str], pd.DataFrame, pd.Series]:
    """A small synthetic section in He et al.'s published format (:func:`write_he2020_section`).

    ``grid`` spots under tissue (16 x 16 = 256, the smallest real section), of which
    ``n_without_counts`` have neither counts nor a Coords row (as published), plus a ring
    of off-tissue spots in the count matrix; GAPDH has no counts and is absent.

    Returns:
        The metadata row, the expected counts (spots with counts x symbols) and the
        expected tumour label per spot "<x>x<y>".
    """
    from tests.synthetic import synthetic_tissue

    rng = np.random.default_rng(seed)
    n_x, n_y = grid
    keys = [f"{x}x{y}" for y in range(2, n_y + 2) for x in range(2, n_x + 2)]
    xy = np.array([[int(v) for v in k.split("x")] for k in keys], dtype=float)
    origin = 40.0
    spots = pd.DataFrame(
        {
            "X": np.round(origin + (xy[:, 0] - 2) * pitch_px + rng.normal(0, 0.3, len(keys)), 2),
            "Y": np.round(origin + (xy[:, 1] - 2) * pitch_px + rng.normal(0, 0.3, len(keys)), 2),
        },
        index=keys,
    )
    counted = keys[: len(keys) - n_without_counts] if n_without_counts else keys
    genes = list(HE_GENES)
    values = rng.poisson([60, 120, 900, 300, 500, 0], (len(counted), len(genes)))
    counts = pd.DataFrame(values, index=counted, columns=genes)
    off = [f"{x}x1" for x in range(1, n_x + 3)] + [f"1x{y}" for y in range(2, n_y + 2)]
    off_counts = pd.DataFrame(1, index=off, columns=genes) * (counts.sum() > 0)
    stdata = pd.concat([counts, off_counts])
    stdata = stdata.loc[:, stdata.sum() > 0]  # genes without counts are absent, as published
    coords = he2020_coords(spots.loc[counted], seed=seed)
    width = int(origin * 2 + (n_x - 1) * pitch_px)
    height = int(origin * 2 + (n_y - 1) * pitch_px)
    image = synthetic_tissue(height, width, (10, 10, width - 10, height - 10), rng)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    row = write_he2020_section(
        root,
        patient=patient,
        replicate=replicate,
        subtype="HER2_luminal",
        stdata=stdata,
        spots=spots,
        coords=coords,
        image=buffer.getvalue(),
        trailing_tab=trailing_tab,
    )
    expected = counts.loc[:, counts.sum() > 0].rename(columns=HE_GENES)
    return row, expected, coords["tumor"]


def write_he2020(root: Path, her2st_dir: Path, sections: dict[str, tuple[str, str]]) -> Path:
    """Real her2st sections in He et al.'s published format (:func:`write_he2020_section`).
    ``sections``: her2st section -> (patient, replicate).

    Genes become unversioned Ensembl-style ids, absent where a section has no counts; the
    count matrix also holds off-tissue spots; the Coords file labels every spot with counts
    (the first section's header ends with a tab). Returns the gene map (id -> symbol).
    """
    root.mkdir(parents=True, exist_ok=True)
    rows, mapping = [], {}
    for i, (section, (patient, replicate)) in enumerate(sections.items()):
        counts, spots, image = her2st_tables(her2st_dir, section)
        ids = ensembl_ids(counts.columns)
        mapping.update({v: k for k, v in ids.items()})
        stdata = counts.loc[:, counts.sum() > 0].rename(columns=ids)
        extra = off_tissue_spots(spots)
        stdata = pd.concat([stdata, pd.DataFrame(1, index=extra, columns=stdata.columns)])
        spot_file = pd.DataFrame({"X": spots["pixel_x"], "Y": spots["pixel_y"]}, index=spots.index)
        rows.append(
            write_he2020_section(
                root,
                patient=patient,
                replicate=replicate,
                subtype="HER2_non_luminal",
                stdata=stdata,
                spots=spot_file,
                coords=he2020_coords(spot_file, seed=i),
                image=image,
                trailing_tab=i == 0,
            )
        )
    write_he2020_metadata(root, rows)
    gene_map = root.parent / "gene_map.tsv"
    pd.Series(mapping, name="symbol").rename_axis("gene_id").to_csv(gene_map, sep="\t")
    return gene_map


def barcodes(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(n)]


def write_10x_h5(
    path: Path, counts: sp.csr_matrix, cell_barcodes: list[str], genes: list[str], ids: list[str]
) -> None:
    """Space Ranger's filtered_feature_bc_matrix.h5 (CellRanger v3 format, as scanpy's
    read_10x_h5 and HEST's write_10X_h5 read / write it): genes x barcodes in CSC."""
    matrix = sp.csr_matrix(counts)  # barcodes x genes in CSR = genes x barcodes in CSC
    with h5py.File(path, "w") as f:
        f.attrs["library_ids"] = np.array([b"sample"])
        f.attrs["chemistry_description"] = b"Spatial 3' v1"
        g = f.create_group("matrix")
        g.create_dataset("barcodes", data=np.array(cell_barcodes, dtype="S"))
        g.create_dataset("data", data=matrix.data.astype(np.int32))
        g.create_dataset("indices", data=matrix.indices.astype(np.int64))
        g.create_dataset("indptr", data=matrix.indptr.astype(np.int64))
        g.create_dataset("shape", data=np.array(matrix.shape[::-1], dtype=np.int32))
        feat = g.create_group("features")
        feat.create_dataset("id", data=np.array(ids, dtype="S"))
        feat.create_dataset("name", data=np.array(genes, dtype="S"))
        feat.create_dataset(
            "feature_type", data=np.array(["Gene Expression"] * len(genes), dtype="S")
        )
        feat.create_dataset("genome", data=np.array(["GRCh38"] * len(genes), dtype="S"))
        feat.create_dataset("_all_tag_keys", data=np.array(["genome"], dtype="S"))


VISIUM_ROWS, VISIUM_COLS = 78, 128  # the 6.5 mm capture area: 4,992 spots
#: scalefactors_json.json of Space Ranger 2.1 (V1_Breast_Cancer_Block_A_Section_1 has the
#: first four): spot_diameter_fullres is the pixel width of a 65 um spot (10x docs).
VISIUM_FIDUCIAL_PER_SPOT = 144.46752486939767 / 89.42751063343188


def visium_grid() -> pd.DataFrame:
    """Every spot of a Visium capture area: array_row 0-77, array_col 0-127 with row + col
    even (hexagonal packing: odd rows hold the odd columns)."""
    rows, cols = np.meshgrid(np.arange(VISIUM_ROWS), np.arange(VISIUM_COLS), indexing="ij")
    keep = (rows + cols) % 2 == 0
    return pd.DataFrame({"array_row": rows[keep], "array_col": cols[keep]})


def visium_scalefactors(pixel_size_um: float) -> dict[str, float]:
    spot = 65.0 / pixel_size_um
    return {
        "regist_target_img_scalef": 0.2,
        "tissue_hires_scalef": 0.2,
        "tissue_lowres_scalef": 0.06,
        "fiducial_diameter_fullres": spot * VISIUM_FIDUCIAL_PER_SPOT,
        "spot_diameter_fullres": spot,
    }


def write_visium_outs(
    folder: Path,
    *,
    positions: pd.DataFrame,
    counts: sp.csr_matrix,
    feature_ids: list[str],
    feature_names: list[str],
    scalefactors: dict[str, float],
    positions_file: str = "tissue_positions.csv",
    header: bool | None = None,
    prefix: str = "",
) -> None:
    """A Space Ranger ``outs/`` folder: ``[<prefix>_]filtered_feature_bc_matrix.h5`` (the
    barcodes with in_tissue = 1, in positions order) and ``spatial/`` with the positions
    file and ``scalefactors_json.json``.

    Args:
        positions: One row per array spot with exactly Space Ranger's columns, in its
            order (barcode, in_tissue, array_row, array_col, pxl_row_in_fullres,
            pxl_col_in_fullres), written as given
            (read so by scanpy.read_visium, squidpy and spatialdata_io.visium).
        positions_file: tissue_positions.csv (2.0+, header), tissue_positions_list.csv (1.x,
            no header unless ``header``) or tissue_positions.parquet (Visium HD).
    """
    (folder / "spatial").mkdir(parents=True, exist_ok=True)
    # the published table, column for column (scanpy.read_visium and spatialdata_io read
    # it by position in the header-less 1.x file): a caller's extra column is a mistake
    published = ["barcode", "in_tissue", "array_row", "array_col"]
    published += ["pxl_row_in_fullres", "pxl_col_in_fullres"]
    assert list(positions.columns) == published, list(positions.columns)
    tissue = positions[positions["in_tissue"] == 1]
    name = f"{prefix}_filtered_feature_bc_matrix.h5" if prefix else "filtered_feature_bc_matrix.h5"
    write_10x_h5(folder / name, counts, list(tissue["barcode"]), feature_names, feature_ids)
    if positions_file.endswith(".parquet"):
        positions.to_parquet(folder / "spatial" / positions_file, index=False)
    else:
        with_header = positions_file == "tissue_positions.csv" if header is None else header
        positions.to_csv(folder / "spatial" / positions_file, index=False, header=with_header)
    (folder / "spatial/scalefactors_json.json").write_text(json.dumps(scalefactors))


def write_tiff(path: Path, image: np.ndarray, pixel_size_um: float) -> None:
    """A plain tiled TIFF (a full-resolution image as scanners export it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    res = 1e4 / pixel_size_um
    tifffile.imwrite(
        path,
        image,
        tile=(256, 256),
        photometric="rgb",
        compression="zlib",
        resolution=(res, res),
        resolutionunit="CENTIMETER",
        metadata=None,
    )


#: Features of a Space Ranger reference; MATR3 is one symbol for two gene ids in 10x's
#: GRCh38-2020-A reference (scanpy keeps both, spatialdata_io.visium makes them unique).
VISIUM_FEATURES = [
    ("ENSG00000141736", "ERBB2"),
    ("ENSG00000141738", "GRB7"),
    ("ENSG00000075624", "ACTB"),
    ("ENSG00000171345", "KRT19"),
    ("ENSG00000015479", "MATR3"),
    ("ENSG00000280987", "MATR3"),
]


def tiny_visium_sample(
    folder: Path,
    *,
    seed: int,
    pixel_size_um: float = 1.7,
    angle_deg: float = 0.3,
    image_name: str = "image.tif",
    positions_file: str = "tissue_positions.csv",
    header: bool | None = None,
    prefix: str = "",
    scalefactors: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A Visium sample folder in Space Ranger's published format (:func:`write_visium_outs`).

    The whole 78 x 128 hexagonal grid is in the positions file, at float pixel coordinates
    of a slightly rotated array whose corner lies far outside the (small) image, so that
    off-tissue spots have negative coordinates; the spots whose centre falls on the tissue
    rectangle of a 640 x 560 px image are in_tissue and counted.

    Returns:
        The counts of the spots under tissue (barcode x feature id) and their positions.
    """
    from tests.synthetic import synthetic_tissue

    rng = np.random.default_rng(seed)
    grid = visium_grid()
    theta = np.deg2rad(angle_deg)
    x_um = grid["array_col"] * 50.0
    y_um = grid["array_row"] * 50.0 * np.sqrt(3)
    origin = (-1800.3, -1200.7)
    px = origin[0] + (x_um * np.cos(theta) - y_um * np.sin(theta)) / pixel_size_um
    py = origin[1] + (x_um * np.sin(theta) + y_um * np.cos(theta)) / pixel_size_um
    tissue = (px > 80) & (px < 560) & (py > 80) & (py < 480)
    positions = pd.DataFrame(
        {
            "barcode": barcodes(len(grid), seed=seed),
            "in_tissue": tissue.astype(int),
            "array_row": grid["array_row"],
            "array_col": grid["array_col"],
            "pxl_row_in_fullres": np.round(py, 4),
            "pxl_col_in_fullres": np.round(px, 4),
        }
    )
    n = int(tissue.sum())
    ids = [i for i, _ in VISIUM_FEATURES]
    counts = pd.DataFrame(
        rng.poisson([50, 90, 800, 300, 20, 5], (n, len(ids))),
        index=positions.loc[tissue, "barcode"].to_numpy(),
        columns=ids,
    )
    write_visium_outs(
        folder / "outs",
        positions=positions,
        counts=sp.csr_matrix(counts.to_numpy()),
        feature_ids=ids,
        feature_names=[name for _, name in VISIUM_FEATURES],
        scalefactors=scalefactors or visium_scalefactors(pixel_size_um),
        positions_file=positions_file,
        header=header,
        prefix=prefix,
    )
    image = synthetic_tissue(560, 640, (60, 60, 580, 500), rng)
    write_tiff(folder / image_name, image, pixel_size_um)
    return counts, positions[tissue].set_index("barcode")


def tiny_visium_hd_sample(
    folder: Path, *, seed: int, microns_per_pixel: float = 0.9, bins: tuple[int, ...] = (2, 8, 16)
) -> dict[int, pd.DataFrame]:
    """A Visium HD sample: ``binned_outputs/square_0XXum/`` per bin size, each with its
    filtered_feature_bc_matrix.h5 and spatial/ (tissue_positions.parquet, scale factors
    with bin_size_um and microns_per_pixel), as spatialdata_io.visium_hd and HEST's
    VisiumHDReader read them; bins cover a 320 x 240 um tissue patch of a 400 x 320 px
    image, barcodes s_0XXum_<row>_<col>-1.

    Returns:
        Bin size -> counts of its bins under tissue (barcode x feature id).
    """
    from tests.synthetic import synthetic_tissue

    rng = np.random.default_rng(seed)
    out = {}
    ids = [i for i, _ in VISIUM_FEATURES[:4]]
    for bin_um in bins:
        n_rows, n_cols = 240 // bin_um, 320 // bin_um
        rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
        rows, cols = rows.ravel(), cols.ravel()
        positions = pd.DataFrame(
            {
                "barcode": [
                    f"s_{bin_um:03d}um_{r:05d}_{c:05d}-1" for r, c in zip(rows, cols, strict=True)
                ],
                "in_tissue": 1,
                "array_row": rows,
                "array_col": cols,
                "pxl_row_in_fullres": 30.0 + (rows + 0.5) * bin_um / microns_per_pixel,
                "pxl_col_in_fullres": 25.0 + (cols + 0.5) * bin_um / microns_per_pixel,
            }
        )
        counts = pd.DataFrame(
            rng.poisson([bin_um, 2 * bin_um, 5 * bin_um, bin_um], (len(positions), len(ids))),
            index=positions["barcode"].to_numpy(),
            columns=ids,
        )
        write_visium_outs(
            folder / "outs" / "binned_outputs" / f"square_{bin_um:03d}um",
            positions=positions,
            counts=sp.csr_matrix(counts.to_numpy()),
            feature_ids=ids,
            feature_names=[name for _, name in VISIUM_FEATURES[:4]],
            scalefactors={
                "spot_diameter_fullres": bin_um / microns_per_pixel,
                "bin_size_um": float(bin_um),
                "microns_per_pixel": microns_per_pixel,
                "regist_target_img_scalef": 0.25,
                "tissue_lowres_scalef": 0.02,
                "fiducial_diameter_fullres": 50.0,
                "tissue_hires_scalef": 0.2,
            },
            positions_file="tissue_positions.parquet",
        )
        out[bin_um] = counts
    (folder / "outs" / "spatial").mkdir(parents=True, exist_ok=True)
    image = synthetic_tissue(320, 400, (20, 20, 380, 300), rng)
    write_tiff(folder / "tissue_image.tif", image, microns_per_pixel)
    return out


def pyvips_levels(image: np.ndarray, tile: int = 256) -> list[np.ndarray]:
    """The levels pyvips' ``tiffsave(pyramid=True)`` writes: halved by 2 x 2 means until
    the level fits in one tile."""
    levels = [image]
    while max(levels[-1].shape[:2]) > tile:
        level = levels[-1]
        h, w = (level.shape[0] // 2) * 2, (level.shape[1] // 2) * 2
        blocks = level[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).astype(np.float32)
        levels.append(np.round(blocks.mean(axis=(1, 3))).astype(np.uint8))
    return levels


def write_pyramid(
    path: Path, image: np.ndarray, pixel_size_um: float, *, compression: str = "lzw"
) -> None:
    """A pyramidal TIFF as HEST writes its WSIs (hest.utils.tiff_save: pyvips tiffsave with
    pyramid=True, tile=True, tile_width=tile_height=256, compression='lzw', resunit CM):
    every level its own page of 256 px tiles (not SubIFDs), reduced levels flagged
    NewSubfileType 1, LZW with the horizontal predictor (pyvips' default) or JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    res = 1e4 / pixel_size_um
    options = {"predictor": True} if compression == "lzw" else {}
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        for i, level in enumerate(pyvips_levels(image)):
            tif.write(
                level,
                tile=(256, 256),
                photometric="rgb",
                compression=compression,
                subfiletype=1 if i else 0,
                resolution=(res / 2**i, res / 2**i),
                resolutionunit="CENTIMETER",
                metadata=None,
                **options,
            )


def write_subifd_pyramid(path: Path, image: np.ndarray, pixel_size_um: float) -> None:
    """A tiled pyramidal TIFF with its reduced levels (1/2, 1/4) in SubIFDs, as tifffile
    and OME-TIFF writers store them (uncompressed: quick to write for large test images)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    res = (1e4 / pixel_size_um, 1e4 / pixel_size_um)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(
            image,
            tile=(512, 512),
            subifds=2,
            photometric="rgb",
            resolution=res,
            resolutionunit="CENTIMETER",
        )
        for step in (2, 4):
            tif.write(image[::step, ::step], tile=(512, 512), subfiletype=1, photometric="rgb")


def write_visium(
    root: Path, her2st_dir: Path, section: str, *, pixel_size_um: float, headerless: bool = False
) -> dict[str, str]:
    """A real her2st section as a Space Ranger outs/ folder (:func:`write_visium_outs`):
    the filtered matrix holds the spots under tissue, the positions file also a few
    off-tissue spots, spot_diameter_fullres spans 65 um. her2st's array is the square ST
    grid (200 um), not Visium's hexagonal one, so readers are given the pixel size."""
    counts, spots, image = her2st_tables(her2st_dir, section)
    extra = off_tissue_spots(spots)
    all_ids = list(spots.index) + extra
    codes = dict(
        zip(all_ids, barcodes(len(all_ids), seed=len(section) + ord(section[0])), strict=True)
    )
    positions = pd.DataFrame(
        {
            "barcode": [codes[s] for s in all_ids],
            "in_tissue": [1] * len(spots) + [0] * len(extra),
            "array_row": [int(s.split("x")[1]) for s in all_ids],
            "array_col": [int(s.split("x")[0]) for s in all_ids],
            "pxl_row_in_fullres": list(spots["pixel_y"]) + [-10.5] * len(extra),
            "pxl_col_in_fullres": list(spots["pixel_x"]) + [-10.5] * len(extra),
        }
    )
    write_visium_outs(
        root / section / "outs",
        positions=positions,
        counts=sp.csr_matrix(counts.loc[spots.index].to_numpy()),
        feature_ids=list(ensembl_ids(counts.columns).values()),
        feature_names=list(counts.columns),
        scalefactors=visium_scalefactors(pixel_size_um),
        positions_file="tissue_positions_list.csv" if headerless else "tissue_positions.csv",
    )
    write_subifd_pyramid(
        root / section / f"{section}_fullres.tif",
        np.asarray(Image.open(image).convert("RGB")),
        pixel_size_um,
    )
    return codes


HEST_STUDIES = {
    "her2st": "Spatial deconvolution of HER2-positive breast cancer delineates tumor-associated "
    "cell type interactions",
    "he2020": "Integrating spatial gene expression and breast tumour morphology via deep learning",
}


def hest_metadata(sample: str, **fields) -> dict:
    """A HEST-1k metadata json (HESTData.meta: the columns of HEST_v1_1_0.csv), with NaN
    for every field not given, as Python's json writes the missing values (bare NaN)."""
    meta = {
        key: float("nan")
        for key in (
            "dataset_title",
            "image_filename",
            "organ",
            "disease_state",
            "oncotree_code",
            "species",
            "patient",
            "st_technology",
            "data_publication_date",
            "license",
            "study_link",
            "download_page_link1",
            "inter_spot_dist",
            "spot_diameter",
            "spots_under_tissue",
            "preservation_method",
            "nb_genes",
            "treatment_comment",
            "pixel_size_um_embedded",
            "pixel_size_um_estimated",
            "magnification",
            "fullres_px_width",
            "fullres_px_height",
            "tissue",
            "disease_comment",
            "subseries",
        )
    }
    meta.update(id=sample, image_filename=f"{sample}.tif", species="Homo sapiens", **fields)
    return meta


def write_hest_sample(
    root: Path,
    sample: str,
    *,
    data: ad.AnnData,
    meta: dict,
    image: np.ndarray,
    pixel_size_um: float,
    compression: str = "lzw",
) -> None:
    """st/<id>.h5ad, metadata/<id>.json (bare NaN, as json.dump writes it) and
    wsis/<id>.tif (:func:`write_pyramid`)."""
    (root / "st").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    data.write_h5ad(root / "st" / f"{sample}.h5ad")
    (root / "metadata" / f"{sample}.json").write_text(json.dumps(meta))
    write_pyramid(root / "wsis" / f"{sample}.tif", image, pixel_size_um, compression=compression)


def hest_st_adata(counts: pd.DataFrame, pixel_xy: np.ndarray) -> ad.AnnData:
    """A legacy-ST sample as HEST's STReader stores it: obs names "<x>x<y>" zero-padded
    to three digits, array_row = the id's x and array_col = its y (so, unlike Space Ranger,
    array_row runs along the image's x), pxl_col / pxl_row_in_fullres, in_tissue True."""
    xy = np.array([[int(v) for v in str(k).split("x")] for k in counts.index])
    names = [f"{x:03d}x{y:03d}" for x, y in xy]
    obs = pd.DataFrame(
        {
            "array_row": xy[:, 0],
            "array_col": xy[:, 1],
            "pxl_col_in_fullres": pixel_xy[:, 0],
            "pxl_row_in_fullres": pixel_xy[:, 1],
            "in_tissue": True,
        },
        index=names,
    )
    data = ad.AnnData(
        counts.to_numpy(), obs=obs, var=pd.DataFrame(index=counts.columns.astype(str))
    )
    data.obsm["spatial"] = pixel_xy
    return data


def write_hest(
    root: Path, her2st_dir: Path, section: str, *, sample: str, patient: str, pixel_size_um: float
) -> None:
    """A real her2st section as a HEST-1k sample of its study (HEST's SPA samples):
    legacy-ST obs (:func:`hest_st_adata`), metadata with the study's dataset_title,
    "Patient <patient>", NaN for the embedded pixel size, a pyvips-style LZW pyramid."""
    counts, spots, image = her2st_tables(her2st_dir, section)
    data = hest_st_adata(
        counts.loc[spots.index], spots[["pixel_x", "pixel_y"]].to_numpy(dtype=float)
    )
    meta = hest_metadata(
        sample,
        dataset_title=HEST_STUDIES["her2st"],
        patient=f"Patient {patient}",
        st_technology="Spatial Transcriptomics",
        pixel_size_um_estimated=pixel_size_um,
        spot_diameter=100.0,
        inter_spot_dist=200.0,
        spots_under_tissue=len(spots),
        organ="Breast",
        oncotree_code="IDC",
        subseries=section,
    )
    write_hest_sample(
        root,
        sample,
        data=data,
        meta=meta,
        image=np.asarray(Image.open(image).convert("RGB")),
        pixel_size_um=pixel_size_um,
    )
