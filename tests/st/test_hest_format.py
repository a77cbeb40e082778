"""HEST-1k samples read from files in the published format.

Fixtures (tests/layouts.py: hest_metadata, write_hest_sample, hest_st_adata, write_pyramid)
checked against HEST's own code (mahmoodlab/HEST): HESTData.save writes the metadata with
json.dump, so missing values are bare NaN (assets/HEST_v1_1_0.csv: 835 of 1,229 samples
without a patient, 872 without an embedded pixel size, embedded values from 0.00047 to
2540 um/px, "Patient 1" in several studies, TENX13 / TENX14 = "Human Breast Cancer (Block
A Section 1 / 2)" without a patient); utils.tiff_save writes the WSI with pyvips
(pyramid, 256 px tiles, LZW); readers.STReader keeps He et al.'s samples with Ensembl ids,
"<x>x<y>" ids zero-padded and array_row = x; readers.VisiumReader uses Space Ranger's
columns; the estimated pixel size is HEST's choice (HESTData.pixel_size).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import tifffile

from brstnet.pipelines.data_processing.nodes import read_sections
from brstnet.st import readers
from brstnet.st.errors import DataError
from brstnet.st.hest import HestOptions
from brstnet.st.hest_metadata import missing, number
from brstnet.st.slides import open_slide
from tests.layouts import (
    HE_GENES,
    HEST_STUDIES,
    barcodes,
    hest_metadata,
    hest_st_adata,
    pyvips_levels,
    write_hest_sample,
    write_pyramid,
)
from tests.synthetic import dp_params, synthetic_tissue

BLOCK_A = "Human Breast Cancer (Block A Section {})"


def _visium_sample(root: Path, sample: str, *, seed: int, outside: int = 0, **meta) -> pd.DataFrame:
    """A small Visium sample as HEST stores it (symbols, barcodes, Space Ranger's obs)
    at 2 um/px; ``outside`` spots get centres beyond the WSI. Returns its counts."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(6), np.arange(12), indexing="ij")
    keep = (rows + cols) % 2 == 0
    rows, cols = rows[keep], cols[keep]
    px = 40.0 + cols * 25.0 + 0.37  # 50 um per array_col at 2 um/px
    py = 40.0 + rows * 25.0 * np.sqrt(3)
    px[:outside] += 1000.0
    names = barcodes(len(rows), seed=seed)
    obs = pd.DataFrame(
        {
            "in_tissue": 1,
            "array_row": rows,
            "array_col": cols,
            "pxl_col_in_fullres": px,
            "pxl_row_in_fullres": py,
        },
        index=names,
    )
    counts = pd.DataFrame(
        rng.poisson([40, 300, 80, 10], (len(rows), 4)),
        index=names,
        columns=["ERBB2", "ACTB", "KRT19", "GRB7"],
    )
    data = ad.AnnData(
        sp.csr_matrix(counts.to_numpy(dtype=np.float32)),
        obs=obs,
        var=pd.DataFrame(index=counts.columns),
    )
    fields = {
        "st_technology": "Visium",
        "pixel_size_um_estimated": 2.0,
        "inter_spot_dist": 100.0,
        "organ": "Breast",
        **meta,
    }
    write_hest_sample(
        root,
        sample,
        data=data,
        meta=hest_metadata(sample, **fields),
        image=synthetic_tissue(300, 360, (10, 10, 350, 290), rng),
        pixel_size_um=2.0,
    )
    return counts


def _he_sample(root: Path, sample: str, *, patient: str, seed: int) -> pd.DataFrame:
    """A He et al. sample as HEST keeps it: Ensembl ids, legacy-ST obs (STReader)."""
    rng = np.random.default_rng(seed)
    keys = [f"{x}x{y}" for y in range(2, 8) for x in range(2, 9)]
    genes = [g for g in HE_GENES if HE_GENES[g] != "GAPDH"]
    counts = pd.DataFrame(rng.poisson(50, (len(keys), len(genes))), index=keys, columns=genes)
    xy = np.array([[int(v) for v in k.split("x")] for k in keys], dtype=float)
    pixels = 30.0 + (xy - 2) * 40.0  # 200 um per step at 5 um/px
    meta = hest_metadata(
        sample,
        dataset_title=HEST_STUDIES["he2020"],
        patient=patient,
        st_technology="Spatial Transcriptomics",
        pixel_size_um_estimated=5.0,
        spot_diameter=100.0,
        inter_spot_dist=200.0,
        subseries=f"{patient}_C1",
    )
    write_hest_sample(
        root,
        sample,
        data=hest_st_adata(counts, pixels),
        meta=meta,
        image=synthetic_tissue(300, 330, (10, 10, 320, 290), rng),
        pixel_size_um=5.0,
    )
    return counts


@pytest.fixture
def hest_root(tmp_path: Path) -> Path:
    """Six samples: two sections of one block without a patient (TENX13 / TENX14),
    "Patient 1" of two studies, and two He et al. samples of one patient."""
    root = tmp_path / "hest"
    for i, sample in enumerate(("TENX13", "TENX14")):
        _visium_sample(
            root,
            sample,
            seed=i,
            dataset_title=BLOCK_A.format(i + 1),
            pixel_size_um_embedded=2540.0001153210233,  # HEST's worst embedded value
        )
    _visium_sample(root, "NCBI1", seed=3, dataset_title="Study one", patient="Patient 1")
    _visium_sample(root, "NCBI2", seed=4, dataset_title="Study two", patient="Patient 1")
    _he_sample(root, "SPA118", patient="BC23287", seed=5)
    _he_sample(root, "SPA117", patient="BC23287", seed=6)
    return root


def test_metadata_holds_bare_nan(hest_root: Path) -> None:
    raw = (hest_root / "metadata/TENX13.json").read_text()
    assert '"patient": NaN' in raw and '"spot_diameter": NaN' in raw
    assert missing(float("nan")) and missing("   ") and missing(None)
    assert not missing("Patient 1") and number("0.5") == 0.5


def test_nan_patient_is_missing_and_a_block_stays_together(hest_root: Path) -> None:
    """Failed before: NaN is truthy, so both sections became patient "nan" of one person
    with every other unlabelled sample, or (with a null) each its own patient."""
    keys = {
        s: readers.patient_of("hest", hest_root, s) for s in readers.sections("hest", hest_root)
    }
    assert keys["TENX13"] == keys["TENX14"] == "Human Breast Cancer (Block A) / no patient"
    assert "nan" not in " ".join(keys.values()).lower()
    assert keys["NCBI1"] == "Study one / Patient 1" != keys["NCBI2"] == "Study two / Patient 1"
    assert keys["SPA118"] == keys["SPA117"] == f"{HEST_STUDIES['he2020']} / BC23287"
    adata = readers.read("hest", hest_root, "TENX13")
    assert adata.uns["patient"] == keys["TENX13"] and adata.obs["patient"].iloc[0] == keys["TENX13"]


def test_user_maps_set_the_patient_or_the_block(hest_root: Path) -> None:
    options = HestOptions(
        patients={"NCBI1": "P7"}, blocks={"TENX13": "block A", "NCBI2": "ignored"}
    )
    assert readers.patient_from_name("hest", "NCBI1", options) == "P7"
    assert readers.patient_of("hest", hest_root, "NCBI1", options) == "P7"
    assert readers.patient_of("hest", hest_root, "TENX13", options) == "block A"
    # a block applies to samples without a patient only
    assert readers.patient_of("hest", hest_root, "NCBI2", options) == "Study two / Patient 1"
    assert readers.patient_from_name("hest", "TENX13", options) is None


def test_a_block_never_lands_on_both_sides_of_a_split(hest_root: Path) -> None:
    """Failed before: unlabelled samples were all patient "nan" (one person across every
    study) and "Patient 1" of two studies was one person: 3 groups instead of 4."""
    from brstnet.features.splits import OUTER, make_splits

    samples = ["TENX13", "TENX14", "NCBI1", "NCBI2", "SPA118"]
    table = pd.DataFrame(
        {
            "dataset": "hest",
            "patient": [readers.patient_of("hest", hest_root, s) for s in samples],
            "section": samples,
        }
    )
    for scheme, k in (("lopo", 5), ("kfold", 2)):
        splits = make_splits(table, scheme=scheme, k=k, inner_scheme="holdout", seed=0)
        for _, fold in splits.groupby(["fold", "inner_fold"]):
            roles = fold.set_index("section")["role"]
            if {"TENX13", "TENX14"} <= set(roles.index):
                assert roles["TENX13"] == roles["TENX14"], (scheme, fold)
    outer = make_splits(table, scheme="lopo", seed=0)
    assert outer.loc[outer["inner_fold"] == OUTER, "fold"].nunique() == 4


def test_pixel_size_is_hests_estimate_never_an_implausible_embedded_one(
    hest_root: Path, caplog
) -> None:
    """Failed before: a NaN estimate passed through (NaN is truthy) and a missing one fell
    back to the embedded 2540 um/px."""
    assert readers.read("hest", hest_root, "TENX13").uns["pixel_size_um"] == 2.0
    path = hest_root / "metadata/TENX13.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "pixel_size_um_estimated": float("nan")}))
    with caplog.at_level(logging.WARNING):
        adata = readers.read("hest", hest_root, "TENX13")
    assert "pixel_size_um_embedded = 2540.0001153210233 um/px is implausible" in caplog.text
    assert "fitted to the spot grid" in caplog.text
    assert adata.uns["pixel_size_um"] == pytest.approx(2.0, rel=1e-3)  # Visium hex grid
    path.write_text(
        json.dumps({**meta, "pixel_size_um_estimated": None, "pixel_size_um_embedded": 1.9})
    )
    assert readers.read("hest", hest_root, "TENX13").uns["pixel_size_um"] == 1.9


def test_spot_geometry_comes_from_the_technology_when_the_json_has_nan(hest_root: Path) -> None:
    adata = readers.read("hest", hest_root, "TENX14")  # spot_diameter NaN
    assert adata.uns["spot_diameter_um"] == 55.0
    he = readers.read("hest", hest_root, "SPA118")
    assert he.uns["spot_diameter_um"] == 100.0 and he.uns["pixel_size_um"] == 5.0


def test_he_samples_keep_their_spots_and_are_mapped_to_symbols(
    hest_root: Path, tmp_path: Path
) -> None:
    counts = _he_sample(hest_root, "SPA116", patient="BC23287", seed=7)
    adata = readers.read("hest", hest_root, "SPA116")
    assert adata.uns["gene_names"] == "ensembl"
    # HEST's array_row is the id's x: read back as array_x, along the image's x
    keys = adata.obs["array_x"].astype(str) + "x" + adata.obs["array_y"].astype(str)
    np.testing.assert_array_equal(adata.X.toarray(), counts.loc[keys].to_numpy())
    assert np.corrcoef(adata.obs["array_x"], adata.obs["pixel_x"])[0, 1] > 0.99
    gene_map = tmp_path / "genes.tsv"
    gene_map.write_text("".join(f"{g}\t{s}\n" for g, s in HE_GENES.items()))
    mapped = readers.read("hest", hest_root, "SPA116", options=HestOptions(gene_map=str(gene_map)))
    assert list(mapped.var_names) == ["ERBB2", "GRB7", "ACTB", "KRT19", "MT-CO1"]
    assert (
        mapped.uns["gene_names"] == "symbol" and mapped.var["gene_ids"].iloc[0] == "ENSG00000141736"
    )


def test_a_run_mixing_ensembl_ids_and_symbols_is_refused(hest_root: Path, tmp_path: Path) -> None:
    """Failed before: a He et al. sample next to Visium samples shared no gene with them."""
    params = dp_params(
        dataset="hest",
        sections=["NCBI1", "SPA118"],
        source={"local_dir": str(hest_root), "raw_dir": str(tmp_path / "raw")},
        stain={"reference_section": None},
    )
    manifest = {"root": str(hest_root)}
    with pytest.raises(
        DataError,
        match=r"the sections name their genes in different ways \(ensembl: \['SPA118'\]; "
        r"symbol: \['NCBI1'\]\).*set data_processing.reader.gene_map",
    ):
        read_sections(manifest, params)
    gene_map = tmp_path / "genes.tsv"
    gene_map.write_text("".join(f"{g}\t{s}\n" for g, s in HE_GENES.items()))
    params["reader"]["gene_map"] = str(gene_map)
    out = read_sections(manifest, params)
    assert set(out["SPA118"].var_names) & set(out["NCBI1"].var_names) == {
        "ERBB2",
        "ACTB",
        "KRT19",
        "GRB7",
    }


def test_spots_outside_the_wsi_are_dropped_and_reported(tmp_path: Path, caplog) -> None:
    """Failed before: one spot off the WSI failed the whole sample."""
    root = tmp_path / "hest"
    counts = _visium_sample(root, "TENX99", seed=9, outside=2, dataset_title="Study three")
    with caplog.at_level(logging.WARNING):
        adata = readers.read("hest", root, "TENX99")
    assert adata.n_obs == len(counts) - 2 and adata.uns["spots_outside_image"] == 2
    assert "2 spot centres in" in caplog.text and "they are dropped" in caplog.text
    assert set(adata.obs["spot_id"]) == set(counts.index[2:])


@pytest.mark.parametrize("compression", ["lzw", "jpeg"])
def test_a_pyvips_pyramid_is_read_by_regions(tmp_path: Path, compression: str) -> None:
    """Failed before (no imagecodecs): "<COMPRESSION.LZW: 5> requires the 'imagecodecs'
    package" on the first tile."""
    rng = np.random.default_rng(0)
    image = synthetic_tissue(900, 1100, (50, 50, 1050, 850), rng)
    path = tmp_path / f"{compression}.tif"
    write_pyramid(path, image, 0.5, compression=compression)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == len(pyvips_levels(image)) == 4  # 1100, 550, 275, 137 px
        assert not tif.pages[0].subifds and tif.pages[1].subfiletype == 1
        assert (
            tif.pages[0].tilewidth == 256 and tif.pages[0].compression.name == compression.upper()
        )
    slide = open_slide(path, "S1")
    assert len(slide.levels) == 4 and (slide.width, slide.height) == (1100, 900)
    crop = slide.crop(600.0, 400.0, 300)
    if compression == "lzw":  # lossless
        np.testing.assert_array_equal(crop, image[250:550, 450:750])
    else:
        assert np.abs(crop.astype(int) - image[250:550, 450:750]).mean() < 12
    thumb, scale = slide.thumbnail()
    assert thumb.shape[1] == int(round(1100 * scale))
    slide.close()


def test_hests_copies_of_her2st_and_he2020_are_their_persons(tmp_path: Path) -> None:
    """her2st patient E is He et al.'s BC23567 (SCIENCE.md); HEST-1k holds both studies, so
    one HEST run can hold the same person twice under two keys."""
    from brstnet.features.identities import person_id
    from brstnet.features.splits import section_table

    root = tmp_path / "hest"
    _he_sample(root, "SPA100", patient="BC23567", seed=1)
    meta = json.loads((root / "metadata/SPA100.json").read_text())
    (root / "metadata/SPA146.json").write_text(
        json.dumps(
            {
                **meta,
                "id": "SPA146",
                "dataset_title": HEST_STUDIES["her2st"],
                "patient": "Patient E",
            }
        )
    )
    keys = [readers.patient_of("hest", root, s) for s in ("SPA100", "SPA146")]
    assert keys[0] != keys[1]
    assert person_id("hest", keys[0]) == person_id("hest", keys[1]) == "he2020:BC23567"
    assert person_id("hest", f"{HEST_STUDIES['her2st']} / Patient A") == "her2st:A"
    assert person_id("hest", "Study one / Patient 1") == "hest:Study one / Patient 1"
    table = section_table(
        pd.DataFrame({"dataset": "hest", "patient": keys, "section": ["SPA100", "SPA146"]})
    )
    assert table["person"].nunique() == 1
