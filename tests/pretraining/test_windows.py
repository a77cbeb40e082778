"""Tissue windows: the grid kept where the tissue mask says tissue, cut as the patch
store cuts, written once, resumably; each fold's windows from its own patients."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brstnet.pretraining import windows as windows_module
from brstnet.pretraining.windows import (
    fold_sections,
    fold_window_rows,
    tissue_windows,
    write_window_store,
)
from brstnet.st.cutting import cut_patches
from brstnet.st.errors import DataError
from brstnet.st.geometry import PatchGeometry
from brstnet.st.patch_store import load_patch_store
from brstnet.st.slides import ArraySlide, open_slide
from tests.synthetic import synthetic_tissue

#: 1 um/px images: a 40 um window is 40 px.
GEOMETRY = PatchGeometry(window_um=40, size_px=16, max_background_fraction=0.5)


def _section(root: Path, name: str, patient: str, box: tuple, seed: int) -> ad.AnnData:
    image = synthetic_tissue(200, 240, box, np.random.default_rng(seed))
    path = root / f"{name}.png"
    Image.fromarray(image).save(path)
    obs = pd.DataFrame({"patient": [patient]}, index=[f"{name}_spot"])
    return ad.AnnData(obs=obs, uns={"image_path": str(path), "pixel_size_um": 1.0, "section": name})


@pytest.fixture
def sections(tmp_path: Path) -> dict[str, ad.AnnData]:
    return {
        "A1": _section(tmp_path, "A1", "A", (0, 0, 120, 200), 1),  # tissue on the left half
        "A2": _section(tmp_path, "A2", "A", (0, 0, 240, 80), 2),  # on the top 80 rows
        "B1": _section(tmp_path, "B1", "B", (120, 0, 240, 200), 3),  # on the right half
    }


def test_windows_are_kept_where_the_mask_says_tissue() -> None:
    image = synthetic_tissue(200, 240, (0, 0, 120, 200), np.random.default_rng(0))
    centres, background = tissue_windows(ArraySlide(image), 1.0, GEOMETRY)
    # a 6 x 5 grid of 40 px windows; the left three columns are tissue
    assert sorted(set(centres[:, 0])) == [20.0, 60.0, 100.0]
    assert sorted(set(centres[:, 1])) == [20.0, 60.0, 100.0, 140.0, 180.0]
    assert (background <= 0.5).all()
    # half the window apart: more windows, and still only over tissue
    dense, _ = tissue_windows(ArraySlide(image), 1.0, GEOMETRY, stride_um=20)
    assert len(dense) > 2 * len(centres) and dense[:, 0].max() <= 120


def test_the_store_holds_the_windows_as_the_patch_store_cuts_them(sections, tmp_path) -> None:
    write_window_store(sections, GEOMETRY, tmp_path / "windows", dataset="test")
    store = load_patch_store(tmp_path / "windows")
    assert store.meta["kind"] == "tissue_windows" and store.meta["stride_um"] == 40.0
    assert store.index.groupby("section").size().to_dict() == {"A1": 15, "A2": 12, "B1": 15}
    assert set(store.index.loc[store.index["section"] == "B1", "patient"]) == {"B"}
    a2 = store.index[store.index["section"] == "A2"]
    slide = open_slide(sections["A2"].uns["image_path"], "A2")
    expected = cut_patches(slide, a2[["pixel_x", "pixel_y"]].to_numpy(), GEOMETRY, 1.0)
    np.testing.assert_array_equal(store.patches[a2["row"].to_numpy()], expected)


def test_a_killed_build_resumes_after_the_finished_sections(
    sections, tmp_path, monkeypatch
) -> None:
    write_window_store(sections, GEOMETRY, tmp_path / "reference")
    real_cut, calls = cut_patches, []

    def dies_on_the_second_section(slide, centres, *args, **kwargs):
        calls.append(len(centres))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run stops part-way
        return real_cut(slide, centres, *args, **kwargs)

    monkeypatch.setattr(windows_module, "cut_patches", dies_on_the_second_section)
    with pytest.raises(KeyboardInterrupt):
        write_window_store(sections, GEOMETRY, tmp_path / "windows")
    assert not (tmp_path / "windows").exists()  # nothing half-written in place
    cut_again = []

    def counts(slide, centres, *args, **kwargs):
        cut_again.append(len(centres))
        return real_cut(slide, centres, *args, **kwargs)

    monkeypatch.setattr(windows_module, "cut_patches", counts)
    write_window_store(sections, GEOMETRY, tmp_path / "windows")
    assert cut_again == [12, 15]  # A2 and B1: A1 was finished before the stop
    for name in ("patches.npy", "index.parquet"):
        assert (tmp_path / "windows" / name).read_bytes() == (
            tmp_path / "reference" / name
        ).read_bytes()


def test_slides_without_tissue_are_an_error(tmp_path) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((100, 100, 3), 242, np.uint8)).save(blank)
    section = ad.AnnData(
        obs=pd.DataFrame({"patient": ["A"]}, index=["s"]),
        uns={"image_path": str(blank), "pixel_size_um": 1.0},
    )
    with pytest.raises(DataError, match="no tissue window"):
        write_window_store({"A1": section}, GEOMETRY, tmp_path / "windows")


SPLITS = pd.DataFrame(
    {
        "fold": [0, 0, 0, 1, 1, 1, 0, 0],
        "inner_fold": [-1, -1, -1, -1, -1, -1, 0, 0],
        "role": ["train", "train", "test", "test", "test", "train", "train", "val"],
        "patient": ["A", "A", "B", "A", "A", "B", "A", "A"],
        "section": ["A1", "A2", "B1", "A1", "A2", "B1", "A1", "A2"],
    }
)


def test_each_fold_pretrains_on_its_training_patients_only() -> None:
    assert fold_sections(SPLITS, 0) == ["A1", "A2"]
    assert fold_sections(SPLITS, 1) == ["B1"]
    assert fold_sections(SPLITS, 1, include_target=True) == ["A1", "A2", "B1"]
    with pytest.raises(ValueError, match="fold 2 is not in the splits"):
        fold_sections(SPLITS, 2)


def test_fold_rows_are_the_sections_windows_at_most_max_windows() -> None:
    index = pd.DataFrame({"section": ["A1"] * 5 + ["B1"] * 5, "row": np.arange(10)})
    np.testing.assert_array_equal(fold_window_rows(index, ["B1"]), [5, 6, 7, 8, 9])
    some = fold_window_rows(index, ["A1", "B1"], max_windows=4, seed=3)
    assert len(some) == 4 and (np.diff(some) > 0).all()
    np.testing.assert_array_equal(
        some, fold_window_rows(index, ["A1", "B1"], max_windows=4, seed=3)
    )
    with pytest.raises(ValueError, match="no tissue windows"):
        fold_window_rows(index, ["C1"])


@pytest.mark.real_data
def test_the_real_b4_slide_has_more_tissue_windows_than_spots(her2st_dir: Path) -> None:
    """B4 (283 spots under tissue, 110 after QC) at the default geometry: 150 um
    windows, 0.688 um/px (the fitted pixel size)."""
    image = next((her2st_dir / "data/ST-imgs/B/B4").glob("*.jpg"))
    slide = open_slide(image, "B4")
    geometry = PatchGeometry(window_um=150, size_px=112, max_background_fraction=0.5)
    centres, background = tissue_windows(slide, 0.688, geometry)
    assert 283 < len(centres) < 2 * 283 and (background <= 0.5).all()
    # kept windows are darker (tissue) than the dropped ones (glass)
    window = geometry.window_px(0.688)
    kept = np.mean([slide.crop(x, y, window).mean() for x, y in centres[::20]])
    corner = slide.crop(window / 2, window / 2, window).mean()
    assert kept < corner - 20
