"""Write real her2st sections in the layouts other data sets are published in.

Each writer keeps the layout's file names, compression and quirks, so that a reader
tested on these files reads the published data unchanged.
"""

from __future__ import annotations

import gzip
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


def write_he2020(root: Path, her2st_dir: Path, sections: dict[str, tuple[str, str]]) -> Path:
    """He et al. 2020 layout. ``sections``: her2st section -> (patient, replicate).

    Quirks kept: metadata names HE_BC..., the file is HE_BT...; genes as Ensembl ids, absent
    where a section has no counts; the count matrix covers off-tissue spots; the Coords file
    has CR line endings and a header one field short. Returns the gene map (id -> symbol).
    """
    root.mkdir(parents=True, exist_ok=True)
    rows, mapping = [], {}
    for section, (patient, replicate) in sections.items():
        counts, spots, image = her2st_tables(her2st_dir, section)
        ids = ensembl_ids(counts.columns)
        mapping.update({v: k for k, v in ids.items()})
        stdata = counts.loc[:, counts.sum() > 0].rename(columns=ids)
        extra = off_tissue_spots(spots)
        stdata = pd.concat([stdata, pd.DataFrame(1, index=extra, columns=stdata.columns)])
        tag = f"{patient}_{replicate}"
        stdata.to_csv(root / f"{tag}_stdata.tsv.gz", sep="\t")
        pd.DataFrame({"X": spots["pixel_x"], "Y": spots["pixel_y"]}, index=spots.index).to_csv(
            root / f"spots_{tag}.csv.gz"
        )
        (root / f"HE_{patient.replace('BC', 'BT')}_{replicate}.jpg").write_bytes(image.read_bytes())
        labels = np.where(np.arange(len(spots)) % 3 == 0, "tumor", "non")
        lines = ["xcoord\tycoord\ttumor"] + [
            f"{s}\t{x}\t{y}\t{lab}"
            for s, x, y, lab in zip(spots.index, spots["x"], spots["y"], labels, strict=True)
        ]
        (root / f"{tag}_Coords.tsv.gz").write_bytes(gzip.compress("\r".join(lines).encode()))
        rows.append(
            {
                "patient": patient,
                "replicate": replicate,
                "type": "HER2_non_luminal",
                "histology_image": f"HE_{patient}_{replicate}.jpg",
                "spot_coordinates": f"spots_{tag}.csv.gz",
                "count_matrix": f"{tag}_stdata.tsv.gz",
                "tumor_annotation": f"{tag}_Coords.tsv.gz",
            }
        )
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    gene_map = root.parent / "gene_map.tsv"
    pd.Series(mapping, name="symbol").rename_axis("gene_id").to_csv(gene_map, sep="\t")
    return gene_map


def barcodes(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(n)]


def write_10x_h5(
    path: Path, counts: sp.csr_matrix, cell_barcodes: list[str], genes: list[str], ids: list[str]
) -> None:
    """Space Ranger's filtered_feature_bc_matrix.h5 (v3): genes x barcodes in CSC."""
    matrix = sp.csr_matrix(counts)  # barcodes x genes in CSR = genes x barcodes in CSC
    with h5py.File(path, "w") as f:
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


def write_pyramid(path: Path, image: np.ndarray, pixel_size_um: float) -> None:
    """A tiled pyramidal TIFF (levels 1, 1/2, 1/4) as Visium / HEST slides are stored."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        res = (1e4 / pixel_size_um, 1e4 / pixel_size_um)
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
    """A Space Ranger outs/ folder; spots are her2st's (100 um), so spot_diameter_fullres = 100 um / pixel size."""
    counts, spots, image = her2st_tables(her2st_dir, section)
    outs = root / section / "outs"
    (outs / "spatial").mkdir(parents=True)
    extra = off_tissue_spots(spots)
    all_ids = list(spots.index) + extra
    codes = dict(
        zip(all_ids, barcodes(len(all_ids), seed=len(section) + ord(section[0])), strict=True)
    )
    matrix = pd.concat(
        [counts.loc[spots.index], pd.DataFrame(1, index=extra, columns=counts.columns)]
    )
    write_10x_h5(
        outs / "filtered_feature_bc_matrix.h5",
        sp.csr_matrix(matrix.to_numpy()),
        [codes[s] for s in matrix.index],
        list(counts.columns),
        list(ensembl_ids(counts.columns).values()),
    )
    grid = pd.DataFrame(
        {
            "barcode": [codes[s] for s in all_ids],
            "in_tissue": [1] * len(spots) + [0] * len(extra),
            "array_row": [int(s.split("x")[1]) for s in all_ids],
            "array_col": [int(s.split("x")[0]) for s in all_ids],
            "pxl_row_in_fullres": list(spots["pixel_y"]) + [10.0] * len(extra),
            "pxl_col_in_fullres": list(spots["pixel_x"]) + [10.0] * len(extra),
        }
    )
    if headerless:
        grid.to_csv(outs / "spatial/tissue_positions_list.csv", index=False, header=False)
    else:
        grid.to_csv(outs / "spatial/tissue_positions.csv", index=False)
    factors = {
        "spot_diameter_fullres": 100.0 / pixel_size_um,
        "tissue_hires_scalef": 0.2,
        "fiducial_diameter_fullres": 150.0,
        "tissue_lowres_scalef": 0.06,
    }
    (outs / "spatial/scalefactors_json.json").write_text(json.dumps(factors))
    write_pyramid(
        root / section / f"{section}_fullres.tif",
        np.asarray(Image.open(image).convert("RGB")),
        pixel_size_um,
    )
    return codes


def write_hest(
    root: Path, her2st_dir: Path, section: str, *, sample: str, patient: str, pixel_size_um: float
) -> dict[str, str]:
    """A HEST-1k sample: st/<id>.h5ad, wsis/<id>.tif, metadata/<id>.json (published field names)."""
    counts, spots, image = her2st_tables(her2st_dir, section)
    extra = off_tissue_spots(spots)
    all_ids = list(spots.index) + extra
    codes = dict(zip(all_ids, barcodes(len(all_ids), seed=7), strict=True))
    matrix = pd.concat(
        [counts.loc[spots.index], pd.DataFrame(1, index=extra, columns=counts.columns)]
    )
    obs = pd.DataFrame(
        {
            "in_tissue": [1] * len(spots) + [0] * len(extra),
            "array_row": [int(s.split("x")[1]) for s in all_ids],
            "array_col": [int(s.split("x")[0]) for s in all_ids],
            "pxl_col_in_fullres": list(spots["pixel_x"]) + [10.0] * len(extra),
            "pxl_row_in_fullres": list(spots["pixel_y"]) + [10.0] * len(extra),
        },
        index=[codes[s] for s in all_ids],
    )
    data = ad.AnnData(
        sp.csr_matrix(matrix.to_numpy().astype(np.float32)),
        obs=obs,
        var=pd.DataFrame(index=counts.columns),
    )
    data.obsm["spatial"] = obs[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy()
    (root / "st").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    data.write_h5ad(root / "st" / f"{sample}.h5ad")
    meta = {
        "id": sample,
        "patient": patient,
        "st_technology": "Spatial Transcriptomics",
        "species": "Homo sapiens",
        "pixel_size_um_estimated": pixel_size_um,
        "pixel_size_um_embedded": None,
        "spot_diameter": 100.0,
        "inter_spot_dist": 200.0,
        "spots_under_tissue": len(spots),
        "organ": "Breast",
        "oncotree_code": "IDC",
    }
    (root / "metadata" / f"{sample}.json").write_text(json.dumps(meta))
    write_pyramid(
        root / "wsis" / f"{sample}.tif", np.asarray(Image.open(image).convert("RGB")), pixel_size_um
    )
    return codes
