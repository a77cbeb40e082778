"""Stain normalisation with torchstain's Macenko normaliser, fitted on a reference."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

from .geometry import um_to_px
from .slides import open_slide

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)

#: Macenko needs enough stained pixels to estimate two stain vectors.
MIN_STAINED_PIXELS = 200
#: Optical density below this counts as unstained (torchstain's default).
OD_BETA = 0.15
#: Side (px) the reference region is resized down to before the Macenko fit.
MAX_REFERENCE_PX = 1024


def stained_pixels(image: np.ndarray, *, io: int = 240) -> int:
    """Number of pixels whose optical density exceeds ``OD_BETA`` in every channel."""
    od = -np.log((image.reshape(-1, 3).astype(float) + 1) / io)
    return int((~np.any(od < OD_BETA, axis=1)).sum())


def fit_macenko(reference: np.ndarray) -> dict:
    """Fit Macenko stain vectors on a reference RGB image.

    Args:
        reference: [H, W, 3] uint8, mostly tissue.

    Returns:
        {"method": "macenko", "he_ref": [[3 x 2]], "max_c_ref": [2]} (JSON-ready).
    """
    if stained_pixels(reference) < MIN_STAINED_PIXELS:
        raise ValueError("the stain reference holds almost no stained tissue; pick another region")
    normalizer = NumpyMacenkoNormalizer()
    normalizer.fit(reference)
    return {
        "method": "macenko",
        "he_ref": np.asarray(normalizer.HERef).tolist(),
        "max_c_ref": np.asarray(normalizer.maxCRef).tolist(),
    }


def fit_stain_reference(adata: ad.AnnData, *, window_um: float, section: str | None = None) -> dict:
    """Fit Macenko stain vectors on a square region of a section's image.

    The region is centred on the median spot position (the middle of the tissue), is
    ``window_um`` micrometres a side (clipped to the image), and is resized down to at
    most ``MAX_REFERENCE_PX`` pixels a side before the fit.

    Args:
        adata: The reference section from :func:`brstnet.st.readers.read`: ``obsm["spatial"]``
            [N, 2] spot centres (x, y) in image pixels, ``uns["image_path"]`` and
            ``uns["pixel_size_um"]``.
        window_um: Side of the region in micrometres.
        section: Name of the section (for messages and the result); ``uns["section"]``
            when None.

    Returns:
        JSON-ready ``{"method": "macenko", "he_ref": [3 x 2], "max_c_ref": [2],
        "section", "centre_px": [x, y], "window_um"}``.

    Raises:
        DataError: the image is missing or unreadable.
        ValueError: the region holds almost no stained tissue.
    """
    from .patches import resize  # patches imports this module: import on use

    name = adata.uns["section"] if section is None else section
    slide = open_slide(adata.uns["image_path"], name)
    window = min(
        um_to_px(window_um, adata.uns["pixel_size_um"]),
        slide.width,
        slide.height,
    )
    x, y = np.median(adata.obsm["spatial"], axis=0)
    region = resize(slide.crop(x, y, window), min(window, MAX_REFERENCE_PX))
    reference = fit_macenko(region)
    reference.update({"section": name, "centre_px": [float(x), float(y)], "window_um": window_um})
    logger.info("stain reference: Macenko on a %.0f um region of section %s", window_um, name)
    return reference


class StainNormalizer:
    """Apply a fitted reference to patches; a no-op when the reference is ``None`` or
    ``{"method": None}`` (normalisation switched off).

    Patches with too little stained tissue to estimate their own stain vectors are
    returned unchanged; :attr:`skipped` counts them.
    """

    def __init__(self, reference: dict | None) -> None:
        self.reference = reference
        self.skipped = 0
        self._normalizer: NumpyMacenkoNormalizer | None = None
        if reference is not None and reference.get("method") is not None:
            if reference["method"] != "macenko":
                raise ValueError(
                    f"unknown stain method {reference.get('method')!r}; use 'macenko' or null"
                )
            self._normalizer = NumpyMacenkoNormalizer()
            self._normalizer.HERef = np.asarray(reference["he_ref"], dtype=float)
            self._normalizer.maxCRef = np.asarray(reference["max_c_ref"], dtype=float)

    def __call__(self, patch: np.ndarray) -> np.ndarray:
        """Normalise one [H, W, 3] uint8 patch."""
        if self._normalizer is None:
            return patch
        if stained_pixels(patch) < MIN_STAINED_PIXELS:
            self.skipped += 1
            return patch
        try:
            with np.errstate(all="ignore"):
                out, _, _ = self._normalizer.normalize(patch, stains=False)
        except (np.linalg.LinAlgError, ValueError, IndexError):
            self.skipped += 1
            return patch
        return out
