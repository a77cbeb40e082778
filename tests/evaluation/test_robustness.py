"""Held-out slides re-cut from degraded copies: each degradation, the cut at the same
physical window, and a variant's r per condition, on a small synthetic slide."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2hed

from brstnet.evaluation.degradations import (
    Condition,
    ResampledSlide,
    conditions,
    hed_shift,
    jpeg_roundtrip,
)
from brstnet.evaluation.robustness import degraded_patches, robustness_table
from brstnet.metrics import pearson_per_gene
from brstnet.st.cutting import cut_patches
from brstnet.st.geometry import PatchGeometry
from brstnet.st.slides import ArraySlide, open_slide
from tests.evaluation.folds import make_fold


def _tissue(size: int = 480, seed: int = 0) -> np.ndarray:
    """A smooth H&E-like image: pink background with purple blobs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    blobs = sum(
        np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.004) for cx, cy in rng.uniform(0, 1, (40, 2))
    )
    h = np.clip(blobs, 0, 1)
    rgb = np.stack([230 - 110 * h, 160 - 90 * h, 200 - 40 * h], axis=-1)
    return np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)


def test_conditions_are_named_and_ordered() -> None:
    names = [
        c.name for c in conditions(pixel_sizes_um=[2, 4], stain_shifts=[0.3], jpeg_qualities=[50])
    ]
    assert names == ["original", "pixel_size_2um", "pixel_size_4um", "stain_shift_0.3", "jpeg_q50"]


def test_resampled_slide_is_the_image_at_the_coarser_pixel_size() -> None:
    image = _tissue()
    slide = ResampledSlide(ArraySlide(image), 0.25)
    assert (slide.width, slide.height) == (120, 120)
    whole = np.asarray(Image.fromarray(image).resize((120, 120), Image.Resampling.LANCZOS))
    region = slide.region(40, 40, 80, 80)
    assert region.shape == (40, 40, 3)
    # read region by region, the same pixels as resampling the whole image (up to the
    # filter's reach at the region's edge)
    diff = np.abs(region.astype(int) - whole[40:80, 40:80].astype(int))
    assert np.median(diff) <= 2 and diff[3:-3, 3:-3].max() <= 12


def test_the_same_window_in_micrometres_covers_the_same_tissue_at_any_pixel_size() -> None:
    image = _tissue()
    geometry = PatchGeometry(window_um=100.0, size_px=32)
    centre = np.array([[240.0, 240.0]])
    fine = cut_patches(ArraySlide(image), centre, geometry, 0.5)  # 200 px window
    coarse = cut_patches(ResampledSlide(ArraySlide(image), 0.25), centre / 4, geometry, 2.0)
    assert geometry.window_px(2.0) == 50 and geometry.window_px(0.5) == 200
    r = pearson_per_gene(fine.reshape(-1, 1).astype(float), coarse.reshape(-1, 1).astype(float))
    assert r[0] > 0.95  # the same tissue, seen less sharply


def test_stain_shift_scales_haematoxylin_up_and_eosin_down() -> None:
    image = _tissue()
    shifted = hed_shift(image, 0.3)
    before, after = rgb2hed(image), rgb2hed(shifted)
    assert np.median(after[..., 0] / np.maximum(before[..., 0], 1e-6)) == pytest.approx(
        1.3, abs=0.08
    )
    assert np.median(after[..., 1] / np.maximum(before[..., 1], 1e-6)) == pytest.approx(
        0.7, abs=0.08
    )
    assert np.abs(hed_shift(image, 0.0).astype(int) - image.astype(int)).max() <= 2


def test_jpeg_roundtrip_is_lossy_and_close() -> None:
    image = _tissue()
    out = jpeg_roundtrip(image, 50)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert 0 < np.abs(out.astype(int) - image.astype(int)).mean() < 8


@pytest.fixture
def section_on_disk(tmp_path: Path):
    """A fold whose held-out spots sit on a real image file of section B1 (0.5 um/px)."""
    fold_input, _ = make_fold(("G1", "G2"), n_train=4, n_test=5)
    path = tmp_path / "B1.jpg"
    Image.fromarray(_tissue()).save(path, quality=95)
    test = fold_input.obs["role"].to_numpy() == "test"
    xy = np.asarray(fold_input.obsm["spatial"], float)
    xy[test] = np.c_[np.linspace(120, 360, test.sum()), np.full(test.sum(), 240.0)]
    fold_input.obsm["spatial"] = xy
    section = ad.AnnData(np.zeros((1, 1), np.float32))
    section.uns.update(image_path=str(path), pixel_size_um=0.5)
    return fold_input, {"B1": lambda: section}, path


def test_degraded_patches_recut_every_held_out_spot_per_condition(section_on_disk, caplog) -> None:
    fold_input, sections, path = section_on_disk
    geometry = PatchGeometry(window_um=60.0, size_px=16)
    wanted = conditions(pixel_sizes_um=[0.4, 2.0], stain_shifts=[0.3], jpeg_qualities=[50])
    with caplog.at_level(logging.WARNING):
        out = degraded_patches(fold_input, sections, geometry, wanted)
    positions = out["positions"]
    np.testing.assert_array_equal(positions, [4, 5, 6, 7])  # the last held-out spot has no patch
    # 0.4 um/px is finer than the slide: no such scan, left out and said
    assert "pixel_size_0.4um" not in out and "pixel_size_0.4um left out" in caplog.text
    assert set(out) == {"positions", "original", "pixel_size_2um", "stain_shift_0.3", "jpeg_q50"}
    xy = np.asarray(fold_input.obsm["spatial"])[positions]
    expected = cut_patches(open_slide(path, "B1"), xy, geometry, 0.5)
    np.testing.assert_array_equal(out["original"], expected)  # the store's own cut
    for name in ("pixel_size_2um", "stain_shift_0.3", "jpeg_q50"):
        assert out[name].shape == (4, 16, 16, 3)
        assert not np.array_equal(out[name], expected)
        r = pearson_per_gene(
            expected.reshape(-1, 1).astype(float), out[name].reshape(-1, 1).astype(float)
        )[0]
        assert r > 0.8, name  # the same spots, degraded


def test_robustness_table_reports_the_share_of_r_kept() -> None:
    metrics = {
        "original": {"median_r": 0.5, "median_partial_r": 0.2, "genes_r_gt_0_5": 40},
        "pixel_size_4um": {"median_r": 0.35, "median_partial_r": 0.05, "genes_r_gt_0_5": 10},
        "jpeg_q50": {"median_r": np.nan, "median_partial_r": np.nan, "genes_r_gt_0_5": 0},
    }
    table = robustness_table(metrics).set_index("condition")
    assert list(table.index) == ["original", "pixel_size_4um", "jpeg_q50"]
    assert table.loc["pixel_size_4um", "median_r_kept"] == pytest.approx(0.7)
    assert table.loc["pixel_size_4um", "median_partial_r_kept"] == pytest.approx(0.25)
    assert table.loc["original", "median_r_kept"] == 1.0
    assert np.isnan(table.loc["jpeg_q50", "median_r_kept"])
    assert robustness_table({}).empty and "median_r_kept" in robustness_table({}).columns


def test_condition_kinds_are_checked() -> None:
    assert Condition("jpeg", 50).name == "jpeg_q50"
    with pytest.raises(ValueError, match="must be < 1"):
        ResampledSlide(ArraySlide(_tissue(32)), 1.0)
