"""10x Visium / Visium HD read from sample folders in Space Ranger's published format.

Fixtures (tests/layouts.py: tiny_visium_sample, tiny_visium_hd_sample) checked against the
public readers of the real files: scanpy.read_visium and read_10x_h5 (positions columns,
header or not by file name), spatialdata_io.visium (``<dataset_id>_filtered_feature_bc_
matrix.h5`` prefixes; tissue_positions_list.csv that has a header, spatialdata-io issue
146; var_names_make_unique), spatialdata_io.visium_hd (binned_outputs/square_0XXum,
tissue_positions.parquet columns, bin_size_um / spot_diameter_fullres = microns_per_pixel)
and 10x's Space Ranger documentation (spot_diameter_fullres spans a theoretical 65 um spot;
78 x 128 hexagonal array, 100 um centre to centre).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brstnet.st import readers
from brstnet.st.errors import DataError
from brstnet.st.visium import VisiumOptions
from tests.layouts import VISIUM_FEATURES, tiny_visium_hd_sample, tiny_visium_sample

PIXEL = 1.7


def _read(root: Path, section: str, **options):
    return readers.read(
        "visium",
        root,
        section,
        pixel_size_um=None,
        options=VisiumOptions(patients={section: "P1"}, **options),
    )


def _same_counts(adata, counts: pd.DataFrame, positions: pd.DataFrame) -> None:
    assert adata.n_obs == len(counts)
    order = adata.obs["spot_id"].to_numpy()
    ids = list(adata.var["gene_ids"])
    np.testing.assert_array_equal(adata.X.toarray(), counts.loc[order, ids].to_numpy())
    np.testing.assert_allclose(adata.obs["pixel_x"], positions.loc[order, "pxl_col_in_fullres"])
    np.testing.assert_allclose(adata.obs["pixel_y"], positions.loc[order, "pxl_row_in_fullres"])
    np.testing.assert_array_equal(adata.obs["array_x"], positions.loc[order, "array_col"])


def test_the_full_hex_grid_with_off_tissue_spots_outside_the_image(tmp_path: Path) -> None:
    counts, positions = tiny_visium_sample(tmp_path / "V1", seed=0, pixel_size_um=PIXEL)
    table = pd.read_csv(tmp_path / "V1/outs/spatial/tissue_positions.csv")
    assert len(table) == 4992 and table["array_row"].max() == 77 and table["array_col"].max() == 127
    assert ((table["array_row"] + table["array_col"]) % 2 == 0).all()
    assert (table["pxl_col_in_fullres"] < 0).sum() > 1000  # off-tissue, off the image
    assert (table["pxl_col_in_fullres"] % 1 != 0).any()  # float pixel coordinates
    adata = _read(tmp_path, "V1")
    assert 50 < adata.n_obs < 200
    _same_counts(adata, counts, positions)
    assert adata.uns["spot_diameter_um"] == 55.0 and adata.uns["gene_names"] == "symbol"


def test_pixel_size_is_fitted_to_the_hex_grid_and_agrees_with_a_65um_spot(
    tmp_path: Path, caplog
) -> None:
    """Failed before: 55 um / spot_diameter_fullres made the pixel size 15 % too small."""
    tiny_visium_sample(tmp_path / "V1", seed=1, pixel_size_um=PIXEL)
    factors = json.loads((tmp_path / "V1/outs/spatial/scalefactors_json.json").read_text())
    assert factors["spot_diameter_fullres"] == pytest.approx(65 / PIXEL)
    with caplog.at_level(logging.WARNING):
        adata = _read(tmp_path, "V1")
    assert adata.uns["pixel_size_um"] == pytest.approx(PIXEL, rel=1e-4)
    assert "the array grid gives" not in caplog.text
    # data_processing.spot_pitch_um scales the array's steps
    wider = readers.read("visium", tmp_path, "V1", spot_pitch_um=200.0)
    assert wider.uns["pixel_size_um"] == pytest.approx(2 * PIXEL, rel=1e-4)


def test_a_scale_factor_that_disagrees_with_the_grid_is_reported(tmp_path: Path, caplog) -> None:
    factors = {"spot_diameter_fullres": 65 / PIXEL * 1.1, "tissue_hires_scalef": 0.2}
    tiny_visium_sample(tmp_path / "V1", seed=1, pixel_size_um=PIXEL, scalefactors=factors)
    with caplog.at_level(logging.WARNING):
        adata = _read(tmp_path, "V1")
    assert adata.uns["pixel_size_um"] == pytest.approx(PIXEL, rel=1e-4)  # the grid wins
    assert re.search(
        r"visium section V1: the array grid gives 1.7000 um/px but .*scalefactors_json.json "
        r"gives 1.5455 um/px \(10 % apart\)",
        caplog.text,
    )


def test_without_scale_factors_the_grid_alone_gives_the_pixel_size(tmp_path: Path) -> None:
    tiny_visium_sample(tmp_path / "V1", seed=1, pixel_size_um=PIXEL)
    (tmp_path / "V1/outs/spatial/scalefactors_json.json").unlink()
    assert _read(tmp_path, "V1").uns["pixel_size_um"] == pytest.approx(PIXEL, rel=1e-4)
    # a positions file whose spots span one array row cannot be fitted: say what to set
    path = tmp_path / "V1/outs/spatial/tissue_positions.csv"
    table = pd.read_csv(path)
    table[table["array_row"] == 30].to_csv(path, index=False)
    with pytest.raises(
        DataError,
        match=r"visium section V1: cannot estimate the pixel size .*set data_processing.pixel_size_um",
    ):
        _read(tmp_path, "V1")


def test_the_hex_grid_steps(tmp_path: Path) -> None:
    from brstnet.st.visium import HEX_STEPS_UM

    assert HEX_STEPS_UM == (50.0, pytest.approx(50 * math.sqrt(3)))


@pytest.mark.parametrize("header", [False, True])
def test_tissue_positions_list_with_or_without_a_header(tmp_path: Path, header: bool) -> None:
    """Failed before with a header: its first row was read as a spot."""
    counts, positions = tiny_visium_sample(
        tmp_path / "V1", seed=2, positions_file="tissue_positions_list.csv", header=header
    )
    first = (tmp_path / "V1/outs/spatial/tissue_positions_list.csv").read_text().split(",")[0]
    assert (first == "barcode") == header
    _same_counts(_read(tmp_path, "V1"), counts, positions)


def test_10x_website_downloads_with_prefixed_file_names(tmp_path: Path) -> None:
    """Failed before: <id>_filtered_feature_bc_matrix.h5 was not found."""
    sample = tmp_path / "CytAssist_FFPE_Human_Breast_Cancer"
    counts, positions = tiny_visium_sample(
        sample,
        seed=3,
        prefix="CytAssist_FFPE_Human_Breast_Cancer",
        image_name="CytAssist_FFPE_Human_Breast_Cancer_tissue_image.tif",
    )
    h5 = sorted(p.name for p in (sample / "outs").glob("*.h5"))
    assert h5 == ["CytAssist_FFPE_Human_Breast_Cancer_filtered_feature_bc_matrix.h5"]
    # the CytAssist camera image next to the H&E is not the H&E
    (sample / "CytAssist_FFPE_Human_Breast_Cancer_cytassist_image.tiff").write_bytes(
        (sample / "CytAssist_FFPE_Human_Breast_Cancer_tissue_image.tif").read_bytes()
    )
    assert readers.sections("visium", tmp_path) == ["CytAssist_FFPE_Human_Breast_Cancer"]
    adata = _read(tmp_path, "CytAssist_FFPE_Human_Breast_Cancer")
    _same_counts(adata, counts, positions)
    assert adata.uns["image_path"].endswith("_tissue_image.tif")


def test_two_feature_ids_with_one_symbol_stay_apart(tmp_path: Path, caplog) -> None:
    counts, positions = tiny_visium_sample(tmp_path / "V1", seed=4)
    with caplog.at_level(logging.WARNING):
        adata = _read(tmp_path, "V1")
    assert list(adata.var_names) == ["ERBB2", "GRB7", "ACTB", "KRT19", "MATR3", "MATR3-1"]
    assert list(adata.var["gene_ids"]) == [i for i, _ in VISIUM_FEATURES]
    assert "1 gene names are shared by several features (e.g. MATR3)" in caplog.text
    order = adata.obs["spot_id"].to_numpy()
    np.testing.assert_array_equal(
        adata[:, "MATR3-1"].X.toarray().ravel(), counts.loc[order, "ENSG00000280987"]
    )


def test_visium_hd_needs_a_bin_size_and_reads_the_chosen_bin(tmp_path: Path) -> None:
    """Failed before: a Visium HD folder was not recognised as a sample at all."""
    bins = tiny_visium_hd_sample(tmp_path / "HD1", seed=5, microns_per_pixel=0.9)
    assert readers.sections("visium", tmp_path) == ["HD1"]
    with pytest.raises(
        DataError,
        match=r"visium section HD1: .* is a Visium HD sample with bins binned_outputs/"
        r"square_002um, binned_outputs/square_008um, binned_outputs/square_016um; set "
        r"data_processing.reader.bin_um to one of \[2, 8, 16\] .*or point the section at one bin folder",
    ):
        _read(tmp_path, "HD1")
    with pytest.raises(DataError, match=r"bin_um = 4 is not among them"):
        _read(tmp_path, "HD1", bin_um=4)
    adata = _read(tmp_path, "HD1", bin_um=16)
    assert adata.n_obs == len(bins[16]) == 300
    order = adata.obs["spot_id"].to_numpy()
    np.testing.assert_array_equal(adata.X.toarray(), bins[16].loc[order].to_numpy())
    assert adata.uns["pixel_size_um"] == pytest.approx(0.9, rel=1e-6)
    assert adata.uns["spot_diameter_um"] == 16.0
    # a bin folder can be the section itself
    hd_bins = tmp_path / "HD1/outs/binned_outputs"
    direct = readers.read(
        "visium",
        hd_bins,
        "square_008um",
        options=VisiumOptions(images={"square_008um": str(tmp_path / "HD1/tissue_image.tif")}),
    )
    assert direct.n_obs == 1200 and direct.uns["pixel_size_um"] == pytest.approx(0.9)
