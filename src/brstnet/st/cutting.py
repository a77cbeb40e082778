"""Spot-centred patches: cut, resize and stain-normalise one window per spot.

:func:`cut_patches` is the one function that turns slide pixels into model patches
(the patch store, whole-slide prediction and pretraining windows all call it);
:func:`extract_section` cuts every spot of one section and scores its background.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .errors import DataError
from .geometry import PatchGeometry
from .images import resize
from .slides import Slide, open_slide
from .stain import StainNormalizer
from .tissue import background_fractions, tissue_mask

logger = logging.getLogger(__name__)

#: Patches cut before they are stain-normalised together.
CUT_BATCH = 64


def cut_patches(
    slide: Slide,
    centres: np.ndarray,
    geometry: PatchGeometry,
    pixel_size_um: float,
    *,
    normalizer: StainNormalizer | None = None,
    desc: str | None = None,
) -> np.ndarray:
    """Cut, resize and stain-normalise the windows around ``centres``.

    The one function that turns slide pixels into model patches: the patch store and
    whole-slide prediction both call it, so a spot is cut identically in both.

    Args:
        slide: The opened image.
        centres: [n, 2] window centres (x, y) in slide pixels.
        geometry: Window (um), patch size (px) and stain reference.
        pixel_size_um: Micrometres per pixel of ``slide``.
        normalizer: A normaliser for ``geometry.stain_reference`` (to reuse its skip
            count); built from the geometry when None.
        desc: Progress-bar label (no bar when None).

    Returns:
        [n, size_px, size_px, 3] uint8.
    """
    window = geometry.window_px(pixel_size_um)
    if normalizer is None:
        normalizer = StainNormalizer(geometry.stain_reference)
    centres = np.asarray(centres, dtype=float).reshape(-1, 2)
    size = geometry.size_px
    patches = np.empty((len(centres), size, size, 3), dtype=np.uint8)
    bar = tqdm(total=len(centres), desc=desc, unit="spot", leave=False, disable=desc is None)
    with bar:
        for start in range(0, len(centres), CUT_BATCH):  # stain-normalised a batch at a time
            batch = centres[start : start + CUT_BATCH]
            crops = np.stack([resize(slide.crop(x, y, window), size) for x, y in batch])
            patches[start : start + len(batch)] = normalizer.normalize_batch(crops)
            bar.update(len(batch))
    return patches


#: The fewest pixels a window may span on a slide: below this no tissue is recognisable
#: (a 150 um window at a mistyped 100 um/px would be 1.5 px).
MIN_WINDOW_PX = 16


def check_window(
    geometry: PatchGeometry,
    pixel_size_um: float,
    slide: Slide,
    where: str,
    *,
    fix: str = "lower data_processing.patches.window_um",
) -> int:
    """The window in pixels, or a DataError (naming ``where`` and ``fix``) when it does
    not fit the image."""
    window = geometry.window_px(pixel_size_um)
    if window < MIN_WINDOW_PX:
        raise DataError(
            f"{where}: a {geometry.window_um} um window is {window} px at {pixel_size_um:g} "
            f"um/px, too few to show tissue (at least {MIN_WINDOW_PX}); scanners give about "
            f"0.1-2 um/px: {fix}"
        )
    if window > min(slide.height, slide.width):
        msg = (
            f"{where}: a {geometry.window_um} um window is {window} px at "
            f"{pixel_size_um:.3f} um/px, larger than the image ({slide.width} x "
            f"{slide.height} px); {fix}"
        )
        raise DataError(msg)
    return window


def extract_section(
    adata: ad.AnnData,
    geometry: PatchGeometry,
    *,
    normalizer: StainNormalizer | None = None,
    slide: Slide | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Cut one patch per spot from the section's image (decoded once, or read by regions).

    Args:
        adata: A section from :func:`brstnet.st.readers.read`.
        geometry: Window, patch size, background threshold and stain reference.
        normalizer: Stain normaliser for ``geometry.stain_reference`` (its skip count
            is reported); built from the geometry when None.
        slide: The opened image, when the caller already has it.
        progress: Show a bar over the section's spots.

    Returns:
        [N, size_px, size_px, 3] uint8 patches and their index rows (no ``row`` yet).
    """
    section = adata.uns["section"]
    path = adata.uns["image_path"]
    if slide is None:
        slide = open_slide(path, section)
    pixel_size = float(adata.uns["pixel_size_um"])
    window = check_window(geometry, pixel_size, slide, f"section {section} (image {path})")
    centres = np.asarray(adata.obsm["spatial"], dtype=float)
    thumb, scale = slide.thumbnail()
    background = background_fractions(tissue_mask(thumb), centres, window=window, scale=scale)

    if normalizer is None:
        normalizer = StainNormalizer(geometry.stain_reference)
    skipped_before = normalizer.skipped
    patches = cut_patches(
        slide,
        centres,
        geometry,
        pixel_size,
        normalizer=normalizer,
        desc=f"patches {section}" if progress else None,
    )
    unnormalised = normalizer.skipped - skipped_before
    if unnormalised:
        logger.warning(
            "section %s: %d patches had too little stain to normalise and were kept as they are",
            section,
            unnormalised,
        )
    index = pd.DataFrame(
        {
            "obs_name": adata.obs_names.to_numpy(),
            "spot_id": adata.obs["spot_id"].to_numpy(),
            "section": adata.obs["section"].astype(str).to_numpy(),
            "patient": adata.obs["patient"].astype(str).to_numpy(),
            "pixel_x": centres[:, 0],
            "pixel_y": centres[:, 1],
            "window_px": window,
            "background_fraction": background,
            "passes_tissue": background <= geometry.max_background_fraction,
        }
    )
    return patches, index
