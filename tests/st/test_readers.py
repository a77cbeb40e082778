"""Other published layouts read back the same counts, coordinates and patches as her2st.

Real her2st sections B4 and C2 are written in the He et al. 2020, Visium and HEST-1k
layouts (tests/layouts.py) and read with brstnet's readers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brstnet.st import readers
from brstnet.st.cutting import extract_section
from brstnet.st.errors import DataError
from brstnet.st.geometry import PatchGeometry
from brstnet.st.he2020 import He2020Options
from brstnet.st.her2st import locate_section, read_section
from brstnet.st.hest import HestOptions
from brstnet.st.stain import StainNormalizer
from brstnet.st.visium import VisiumOptions
from tests.layouts import write_he2020, write_hest, write_visium

pytestmark = pytest.mark.real_data
PIXEL = 0.6878  # fixed so that every reader cuts the same windows


@pytest.fixture(scope="module")
def reference(her2st_dir: Path) -> dict:
    """The her2st reader's sections and B4/C2 patches, the yardstick for the other layouts."""
    out = {}
    for section in ("B4", "C2"):
        adata = read_section(locate_section(her2st_dir, section), pixel_size_um=PIXEL)
        out[section] = adata
    return out


def _patches(adata):
    """Patches in the order of the spots' array positions ("<x>x<y>")."""
    geometry = PatchGeometry(window_um=150, size_px=64, max_background_fraction=0.5)
    patches, _ = extract_section(adata, geometry, normalizer=StainNormalizer(None))
    keys = (adata.obs["array_x"].astype(str) + "x" + adata.obs["array_y"].astype(str)).to_numpy()
    return patches[np.argsort(keys, kind="stable")]


def _same_section(ours, theirs, *, genes=None) -> None:
    genes = list(theirs.var_names) if genes is None else genes
    assert ours.n_obs == theirs.n_obs
    order = ours.obs.assign(
        key=ours.obs["array_x"].astype(str) + "x" + ours.obs["array_y"].astype(str)
    ).set_index("key")
    ref = theirs.obs.set_index("spot_id")
    order = order.loc[ref.index]
    np.testing.assert_allclose(
        order[["pixel_x", "pixel_y"]].to_numpy(), ref[["pixel_x", "pixel_y"]].to_numpy()
    )
    np.testing.assert_array_equal(order["total_counts"], ref["total_counts"])
    mine = pd.DataFrame(
        ours[:, genes].X.toarray(),
        index=ours.obs["array_x"].astype(str) + "x" + ours.obs["array_y"].astype(str),
        columns=genes,
    )
    np.testing.assert_array_equal(mine.loc[ref.index].to_numpy(), theirs[:, genes].X.toarray())


def test_he2020_layout(tmp_path: Path, her2st_dir: Path, reference: dict, caplog) -> None:
    caplog.set_level("INFO")
    root = tmp_path / "he2020"
    gene_map = write_he2020(root, her2st_dir, {"B4": ("BC23901", "C1"), "C2": ("BC23902", "D2")})
    assert readers.sections("he2020", root) == ["BC23901_C1", "BC23902_D2"]
    assert readers.patient_of("he2020", root, "BC23902_D2") == "BC23902"
    options = He2020Options(gene_map=str(gene_map))
    for section, name in (("B4", "BC23901_C1"), ("C2", "BC23902_D2")):
        theirs = reference[section]
        ours = readers.read(
            "he2020",
            root,
            name,
            pixel_size_um=PIXEL,
            spot_pitch_um=None,
            max_unmatched_fraction=0.02,
            options=options,
        )
        expressed = list(theirs.var_names[np.asarray(theirs.X.sum(axis=0)).ravel() > 0])
        assert sorted(ours.var_names) == sorted(
            expressed
        )  # genes without counts are absent, as published
        _same_section(ours, theirs, genes=expressed)
        assert ours.uns["dataset"] == "he2020" and ours.uns["subtype"] == "HER2_non_luminal"
        assert ours.obs["tumor"].notna().all() and set(ours.obs["tumor"]) == {"tumor", "non"}
        if section == "B4":
            np.testing.assert_array_equal(_patches(ours), _patches(theirs))
    assert "5 counted spots are off the tissue and left out" in caplog.text
    # without a gene map the Ensembl ids are kept, and the log says so
    ids = readers.read(
        "he2020",
        root,
        "BC23902_D2",
        pixel_size_um=PIXEL,
        spot_pitch_um=None,
        max_unmatched_fraction=0.02,
    )
    assert ids.var_names[0].startswith("ENSG") and "genes keep their Ensembl ids" in caplog.text
    # the pixel size estimated from the integer grid matches her2st's (~0.688 um/px)
    auto = readers.read(
        "he2020",
        root,
        "BC23902_D2",
        pixel_size_um=None,
        spot_pitch_um=None,
        max_unmatched_fraction=0.02,
    )
    assert auto.uns["pixel_size_um"] == pytest.approx(0.688, abs=0.005)


def test_he2020_malformed(tmp_path: Path, her2st_dir: Path) -> None:
    root = tmp_path / "he2020"
    write_he2020(root, her2st_dir, {"C2": ("BC23902", "D2")})

    def read():
        return readers.read(
            "he2020",
            root,
            "BC23902_D2",
            pixel_size_um=PIXEL,
            spot_pitch_um=None,
            max_unmatched_fraction=0.02,
        )

    spot_file = root / "spots_BT23902_D2.csv.gz"  # named so in metadata.csv, as published
    spots = pd.read_csv(spot_file, index_col=0)
    spots.rename(columns={"X": "x_px"}).to_csv(spot_file)
    with pytest.raises(
        DataError,
        match=r"section BC23902_D2: spot file .*spots_BT23902_D2.csv.gz lacks columns X, Y",
    ):
        read()
    spots.set_axis([f"spot{i}" for i in range(len(spots))]).to_csv(spot_file)
    with pytest.raises(
        DataError, match=r"spot ids in .*spots_BT23902_D2.csv.gz must look like '<x>x<y>'"
    ):
        read()
    spots.to_csv(spot_file)
    (root / "HE_BT23902_D2.jpg").unlink()
    with pytest.raises(
        DataError,
        match=r"section BC23902_D2: H&E image .*HE_BT23902_D2.jpg is missing \(also tried the BT/BC variants",
    ):
        read()
    meta = pd.read_csv(root / "metadata.csv")
    meta.drop(columns="count_matrix").to_csv(root / "metadata.csv", index=False)
    with pytest.raises(DataError, match=r"metadata.csv lacks columns \['count_matrix'\]"):
        read()


def test_visium_layout_reads_a_pyramidal_tiff_by_regions(
    tmp_path: Path, her2st_dir: Path, reference: dict
) -> None:
    root = tmp_path / "visium"
    write_visium(root, her2st_dir, "C2", pixel_size_um=PIXEL)
    write_visium(root, her2st_dir, "B4", pixel_size_um=PIXEL, headerless=True)  # older Space Ranger
    assert readers.sections("visium", root) == ["B4", "C2"]
    options = VisiumOptions(spot_diameter_um=100.0, patients={"B4": "B", "C2": "C"})
    for section in ("B4", "C2"):
        ours = readers.read(
            "visium",
            root,
            section,
            pixel_size_um=PIXEL,  # her2st's square grid is no Visium array to fit
            spot_pitch_um=None,
            max_unmatched_fraction=0.02,
            options=options,
        )
        theirs = reference[section]
        assert ours.uns["pixel_size_um"] == PIXEL and ours.uns["spot_diameter_um"] == 100.0
        assert (
            ours.obs["patient"].iloc[0] == section[0]
            and ours.obs["spot_id"].str.endswith("-1").all()
        )
        _same_section(ours, theirs)
    np.testing.assert_array_equal(_patches(ours), _patches(reference["C2"]))


def test_visium_malformed(tmp_path: Path, her2st_dir: Path) -> None:
    root = tmp_path / "visium"
    write_visium(root, her2st_dir, "C2", pixel_size_um=PIXEL)

    def read():
        return readers.read(
            "visium",
            root,
            "C2",
            pixel_size_um=PIXEL,
            spot_pitch_um=None,
            max_unmatched_fraction=0.02,
        )

    spatial = root / "C2/outs/spatial"
    positions = pd.read_csv(spatial / "tissue_positions.csv")
    positions.drop(columns="pxl_row_in_fullres").to_csv(
        spatial / "tissue_positions.csv", index=False
    )
    with pytest.raises(
        DataError, match=r"tissue_positions.csv lacks columns \['pxl_row_in_fullres'\]"
    ):
        read()
    positions.to_csv(spatial / "tissue_positions.csv", index=False)
    (root / "C2/C2_fullres.tif").unlink()
    with pytest.raises(DataError, match=r"visium section C2: give the full-resolution H&E image"):
        read()


def test_hest_layout(tmp_path: Path, her2st_dir: Path, reference: dict) -> None:
    root = tmp_path / "hest"
    write_hest(root, her2st_dir, "C2", sample="SPA999", patient="C", pixel_size_um=PIXEL)
    study = "Spatial deconvolution of HER2-positive breast cancer delineates tumor-associated cell type interactions"
    assert readers.sections("hest", root) == ["SPA999"]
    assert readers.patient_of("hest", root, "SPA999") == f"{study} / Patient C"
    ours = readers.read(
        "hest", root, "SPA999", pixel_size_um=None, spot_pitch_um=None, max_unmatched_fraction=0.02
    )
    assert (
        ours.uns["pixel_size_um"] == pytest.approx(PIXEL) and ours.uns["spot_diameter_um"] == 100.0
    )
    _same_section(ours, reference["C2"])
    np.testing.assert_array_equal(_patches(ours), _patches(reference["C2"]))
    assert ours.uns["patient"] == f"{study} / Patient C"
    # a configured patient overrides the metadata's, in patient_of, patient_from_name and read
    named = HestOptions(patients={"SPA999": "P1"})
    assert readers.patient_from_name("hest", "SPA999", named) == "P1"
    assert readers.patient_of("hest", root, "SPA999", named) == "P1"
    assert readers.read("hest", root, "SPA999", options=named).uns["patient"] == "P1"
    # no pixel size in the metadata (bare NaN): fitted to the 200 um grid, then no slide
    meta_path = root / "metadata/SPA999.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "pixel_size_um_estimated": float("nan")}))
    fitted = readers.read("hest", root, "SPA999", spot_pitch_um=None)
    assert fitted.uns["pixel_size_um"] == pytest.approx(0.688, abs=0.005)
    (root / "wsis/SPA999.tif").unlink()
    with pytest.raises(DataError, match=r"section SPA999: image .*SPA999.tif is missing"):
        readers.read(
            "hest",
            root,
            "SPA999",
            pixel_size_um=PIXEL,
            spot_pitch_um=None,
            max_unmatched_fraction=0.02,
        )
