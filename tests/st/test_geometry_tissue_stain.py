"""Patch geometry, tissue cover and stain normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from brstnet.st.geometry import estimate_pixel_size, um_to_px
from brstnet.st.stain import StainNormalizer, fit_macenko
from brstnet.st.tissue import background_fractions, tissue_mask
from tests.st.former import torchstain_fit, torchstain_patch_by_patch
from tests.synthetic import synthetic_tissue


def test_um_to_px() -> None:
    assert um_to_px(150, 0.69) == 217  # 217.39
    assert um_to_px(100, 0.5) == 200
    assert um_to_px(0.1, 1.0) == 1
    with pytest.raises(ValueError, match="pixel_size_um"):
        um_to_px(100, 0)


def test_estimate_pixel_size_from_a_rotated_grid() -> None:
    grid = np.array([(x, y) for x in range(5) for y in range(4)], dtype=float)
    angle = np.deg2rad(3)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pixels = grid @ (290.0 * rot).T + [1000, 2000]
    assert estimate_pixel_size(grid, pixels, spot_pitch_um=200) == pytest.approx(200 / 290)


def test_estimate_pixel_size_needs_two_directions() -> None:
    grid = np.array([(x, 0) for x in range(5)], dtype=float)
    with pytest.raises(ValueError, match="set data_processing.pixel_size_um"):
        estimate_pixel_size(grid, grid * 100, spot_pitch_um=200, where="section X")


def test_background_fraction_of_tissue_glass_and_edge() -> None:
    rng = np.random.default_rng(0)
    image = synthetic_tissue(400, 400, (0, 0, 200, 400), rng)  # left half tissue
    mask = tissue_mask(image)
    assert mask[:, :190].mean() > 0.95 and mask[:, 210:].mean() < 0.05
    frac = background_fractions(
        mask, np.array([[100, 200], [300, 200], [200, 200], [0, 0]]), window=80, scale=1.0
    )
    np.testing.assert_allclose(frac[:3], [0.0, 1.0, 0.5], atol=0.05)
    # a window centred on the corner: three quarters lie outside the image
    assert frac[3] >= 0.75


def test_blank_image_has_no_tissue() -> None:
    assert not tissue_mask(np.full((50, 50, 3), 240, np.uint8)).any()


def test_macenko_maps_a_patch_towards_the_reference() -> None:
    rng = np.random.default_rng(0)
    reference = synthetic_tissue(256, 256, (0, 0, 256, 256), rng)
    fitted = fit_macenko(reference)
    assert fitted["method"] == "macenko" and np.asarray(fitted["he_ref"]).shape == (3, 2)
    normalizer = StainNormalizer(fitted)
    # the same tissue, stained at 60 %: normalisation brings it back to the reference
    pale = synthetic_tissue(256, 256, (0, 0, 256, 256), np.random.default_rng(0), strength=0.6)
    out = normalizer(pale)
    assert out.shape == pale.shape and out.dtype == np.uint8
    assert (
        np.abs(out.astype(float) - reference).mean()
        < 0.5 * np.abs(pale.astype(float) - reference).mean()
    )
    assert normalizer.skipped == 0


def test_stain_normalizer_off_and_blank_patches() -> None:
    blank = np.full((32, 32, 3), 250, np.uint8)
    assert StainNormalizer(None)(blank) is blank
    assert StainNormalizer({"method": None})(blank) is blank  # switched off, as stored
    rng = np.random.default_rng(1)
    normalizer = StainNormalizer(fit_macenko(synthetic_tissue(64, 64, (0, 0, 64, 64), rng)))
    np.testing.assert_array_equal(normalizer(blank), blank)
    assert normalizer.skipped == 1
    with pytest.raises(ValueError, match="almost no stained tissue"):
        fit_macenko(blank)


def test_batched_normalisation_equals_torchstain_patch_by_patch() -> None:
    rng = np.random.default_rng(2)
    reference = fit_macenko(synthetic_tissue(256, 256, (0, 0, 256, 256), rng))
    patches = np.stack(
        [
            synthetic_tissue(48, 48, (0, 0, 48, 48 - 4 * i), np.random.default_rng(i), strength=s)
            for i, s in enumerate(np.linspace(0.4, 1.4, 11))
        ]
        + [np.full((48, 48, 3), 245, np.uint8)]  # glass: left as it is
    )
    expected, skipped = torchstain_patch_by_patch(reference, patches)
    normalizer = StainNormalizer(reference)
    out = normalizer.normalize_batch(patches)
    assert out.dtype == np.uint8 and out.shape == patches.shape
    assert skipped == normalizer.skipped == 1
    np.testing.assert_array_equal(out[-1], patches[-1])
    # the stated tolerance: one grey level on at most 0.1 % of the values (identical here)
    diff = np.abs(out.astype(int) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3
    assert not np.array_equal(out, patches)  # the stained patches were changed
    # one patch at a time gives the same as the batch; small batches split the work alike
    np.testing.assert_array_equal(np.stack([normalizer(p) for p in patches]), out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_stain_fit_is_torchstains(seed: int) -> None:
    """fit_macenko (looked-up optical densities, a pseudo-inverse for the concentrations)
    gives torchstain's stain matrix and maximum concentrations."""
    rng = np.random.default_rng(seed)
    reference = synthetic_tissue(300, 280, (20, 10, 260, 250), rng, strength=0.6 + 0.3 * seed)
    fitted = fit_macenko(reference)
    he, max_c = torchstain_fit(reference)
    np.testing.assert_allclose(fitted["he_ref"], he, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fitted["max_c_ref"], max_c, rtol=1e-12)
    with pytest.raises(ValueError, match="almost no stained tissue"):
        fit_macenko(np.full((64, 64, 3), 245, np.uint8))
