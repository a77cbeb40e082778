"""Library functions behind the data_processing nodes, without Kedro: spot QC, the stain
reference and the patch store, on tiny synthetic sections."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from brstnet.st.cutting import extract_section
from brstnet.st.errors import DataError
from brstnet.st.geometry import PatchGeometry, um_to_px
from brstnet.st.her2st import locate_section, read_section
from brstnet.st.images import resize
from brstnet.st.patches import build_patch_store, load_patch_store
from brstnet.st.patches import save_patch_store as save_from_patches
from brstnet.st.qc import filter_low_reads
from brstnet.st.slides import open_slide
from brstnet.st.stain import fit_macenko, fit_stain_reference


def _read(root: Path, section: str) -> ad.AnnData:
    return read_section(locate_section(root, section))


def _totals(root: Path, section: str) -> pd.Series:
    return pd.read_csv(root / f"data/ST-cnts/{section}.tsv.gz", sep="\t", index_col=0).sum(axis=1)


# ---------------------------------------------------------------- spot QC


def _messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    """What ``logger`` logged (other loggers may log too when the suite set levels)."""
    return [r.getMessage() for r in caplog.records if r.name == logger]


def test_filter_low_reads_keeps_spots_at_the_threshold(
    tiny_her2st: Path, caplog: pytest.LogCaptureFixture
) -> None:
    adata = _read(tiny_her2st, "A1")
    totals = _totals(tiny_her2st, "A1")
    threshold = int(totals.sort_values().iloc[5])  # the 6th fewest reads: 5 spots fall below
    with caplog.at_level(logging.INFO, logger="brstnet.st.qc"):
        kept, row = filter_low_reads(adata, threshold)

    expected = totals[totals >= threshold]
    assert kept.n_obs == 7 and adata.n_obs == 12  # the input is left as it was
    assert list(kept.obs_names) == [f"A1_{spot}" for spot in expected.index]
    assert kept.obs["total_counts"].min() == threshold  # a spot exactly at it is kept
    assert kept.uns["qc"] == {"min_total_reads": threshold}
    assert row == {
        "section": "A1",
        "patient": "A",
        "spots": 12,
        "dropped_low_reads": 5,
        "kept": 7,
        "median_reads_kept": float(np.median(expected)),
        "pixel_size_um": pytest.approx(200 / 145),
    }
    assert _messages(caplog, "brstnet.st.qc") == [
        f"section A1: 12 spots, 5 dropped (< {threshold} reads), 7 kept"
    ]


def _three_spots() -> ad.AnnData:
    adata = ad.AnnData(np.ones((3, 2), np.int32))
    adata.obs["total_counts"] = [5, 7, 9]
    adata.uns.update(section="A1", patient="A", image_path="x.jpg", pixel_size_um=1.0)
    return adata


def test_filter_low_reads_names_the_empty_section() -> None:
    adata = _three_spots()
    kept, row = filter_low_reads(adata, 9)  # the most reads still passes
    assert kept.n_obs == 1 and row["dropped_low_reads"] == 2 and row["median_reads_kept"] == 9.0
    message = (
        "section A1: no spot has 10 or more reads (the most is 9; file x.jpg); "
        "lower data_processing.qc.min_total_reads or drop the section"
    )
    with pytest.raises(DataError) as error:
        filter_low_reads(adata, 10)
    assert str(error.value) == message
    with pytest.raises(DataError, match=r"^section Z9: no spot has 10 or more"):
        filter_low_reads(adata, 10, section="Z9")


# ---------------------------------------------------------------- stain reference


def test_stain_reference_is_fitted_on_the_median_spot_region(
    tiny_her2st: Path, caplog: pytest.LogCaptureFixture
) -> None:
    adata = _read(tiny_her2st, "A1")
    with caplog.at_level(logging.INFO, logger="brstnet.st.stain"):
        reference = fit_stain_reference(adata, window_um=400)

    x, y = np.median(adata.obsm["spatial"], axis=0)
    assert reference["method"] == "macenko" and reference["section"] == "A1"
    assert reference["centre_px"] == [float(x), float(y)] and reference["window_um"] == 400
    he_ref = np.asarray(reference["he_ref"])
    assert he_ref.shape == (3, 2) and len(reference["max_c_ref"]) == 2
    np.testing.assert_allclose(np.linalg.norm(he_ref, axis=0), 1.0)  # unit stain vectors
    # the fit is Macenko on the 400 um (290 px) window around the median spot
    window = um_to_px(400, adata.uns["pixel_size_um"])
    assert window == 290
    region = open_slide(adata.uns["image_path"], "A1").crop(x, y, window)
    assert {k: reference[k] for k in ("method", "he_ref", "max_c_ref")} == fit_macenko(region)
    assert _messages(caplog, "brstnet.st.stain") == [
        "stain reference: Macenko on a 400 um region of section A1"
    ]


def test_stain_reference_window_is_clipped_to_the_image(tiny_her2st: Path) -> None:
    adata = _read(tiny_her2st, "A1")
    reference = fit_stain_reference(adata, window_um=5000, section="chosen")  # 3625 px
    assert reference["section"] == "chosen" and reference["window_um"] == 5000
    x, y = reference["centre_px"]
    region = open_slide(adata.uns["image_path"], "A1").crop(x, y, 800)  # 1000 x 800 image
    assert reference["he_ref"] == fit_macenko(resize(region, 800))["he_ref"]


@pytest.mark.real_data
def test_real_stain_reference_is_torchstains_fit(her2st_dir: Path) -> None:
    """The default reference (C2, a 1,500 um region resized to 1,024 px): the stain matrix
    and maximum concentrations torchstain's fit gives on the same region."""
    from tests.st.former import torchstain_fit

    adata = read_section(locate_section(her2st_dir, "C2"))
    reference = fit_stain_reference(adata, window_um=1500)
    x, y = reference["centre_px"]
    window = um_to_px(1500, adata.uns["pixel_size_um"])
    region = resize(open_slide(adata.uns["image_path"], "C2").crop(x, y, window), 1024)
    he, max_c = torchstain_fit(region)
    np.testing.assert_allclose(reference["he_ref"], he, rtol=0, atol=1e-12)
    np.testing.assert_allclose(reference["max_c_ref"], max_c, rtol=1e-12)


def test_stain_reference_on_glass_is_refused(tiny_her2st: Path) -> None:
    adata = _read(tiny_her2st, "A1")
    adata.obsm["spatial"] = np.full((adata.n_obs, 2), 60.0)  # the corner: no tissue
    with pytest.raises(ValueError, match="almost no stained tissue"):
        fit_stain_reference(adata, window_um=100)


# ---------------------------------------------------------------- patch store


def test_build_patch_store_rows_follow_the_section_order(
    tiny_her2st: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a1, b1 = _read(tiny_her2st, "A1"), _read(tiny_her2st, "B1")
    geometry = PatchGeometry(
        window_um=150, size_px=24, stain_reference=fit_stain_reference(a1, window_um=600)
    )
    loaded = []

    def load_b1() -> ad.AnnData:
        loaded.append("B1")
        return b1

    with caplog.at_level(logging.INFO, logger="brstnet.st.patches"):
        store = build_patch_store({"B1": load_b1, "A1": a1}, geometry, dataset="her2st")

    assert loaded == ["B1"]  # a loader is called once
    assert store.patches.shape == (24, 24, 24, 3) and store.patches.dtype == np.uint8
    names = [*b1.obs_names, *a1.obs_names]
    assert list(store.index.index) == names and list(store.index["obs_name"]) == names
    assert store.index.index.name is None
    np.testing.assert_array_equal(store.index["row"], np.arange(24))
    assert list(store.index["section"]) == ["B1"] * 12 + ["A1"] * 12
    assert (store.index["window_px"] == 109).all()  # 150 um at 200/145 um/px
    np.testing.assert_array_equal(store.rows(["A1_1x1", "B1_1x1"]), [12, 0])
    # the patches are extract_section's, section after section
    for section, adata, rows in (("B1", b1, slice(0, 12)), ("A1", a1, slice(12, 24))):
        patches, index = extract_section(adata, geometry)
        np.testing.assert_array_equal(store.patches[rows], patches)
        assert store.index.iloc[rows]["passes_tissue"].tolist() == index["passes_tissue"].tolist()
        assert store.index.iloc[rows]["section"].eq(section).all()
    assert store.meta == {
        "dataset": "her2st",
        "window_um": 150.0,
        "size_px": 24,
        "max_background_fraction": 0.5,
        "stain_reference": geometry.stain_reference,
        "stain_unnormalised_patches": 0,
    }
    assert store.geometry == geometry
    assert _messages(caplog, "brstnet.st.patches") == [
        "section B1: 12 patches, 0 over 50% background (kept, excluded from training)",
        "section A1: 12 patches, 0 over 50% background (kept, excluded from training)",
    ]

    save_from_patches(store, tmp_path / "store")  # names re-exported by brstnet.st.patches
    again = load_patch_store(tmp_path / "store")
    assert again.geometry == geometry and again.meta == store.meta
    pd.testing.assert_frame_equal(again.index, store.index)
    np.testing.assert_array_equal(again.patches, store.patches)


def test_build_patch_store_without_stain_normalisation(tiny_her2st: Path) -> None:
    a1 = _read(tiny_her2st, "A1")
    geometry = PatchGeometry(window_um=150, size_px=16)
    store = build_patch_store({"A1": a1}, geometry, dataset="visium")
    assert store.meta["dataset"] == "visium" and store.meta["stain_reference"] == {"method": None}
    assert store.geometry == PatchGeometry(150, 16, stain_reference={"method": None})
    np.testing.assert_array_equal(store.patches, extract_section(a1, geometry)[0])


def test_build_patch_store_needs_a_section() -> None:
    with pytest.raises(ValueError, match="at least one section"):
        build_patch_store({}, PatchGeometry(window_um=150, size_px=16), dataset="her2st")
