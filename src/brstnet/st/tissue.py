"""Tissue detection: Gaussian blur + Otsu threshold on a slide thumbnail (BrST-Net)."""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2gray
from skimage.filters import gaussian, threshold_otsu


def tissue_mask(thumbnail: np.ndarray, *, sigma: float = 2.0) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail.

    Args:
        thumbnail: [H, W, 3] uint8 RGB.
        sigma: Gaussian blur in thumbnail pixels before thresholding.

    Returns:
        [H, W] bool, True on tissue (darker than the Otsu threshold).
    """
    gray = gaussian(rgb2gray(thumbnail), sigma=sigma)
    if np.ptp(gray) == 0:  # a blank image: no tissue anywhere
        return np.zeros(gray.shape, dtype=bool)
    return gray < threshold_otsu(gray)


def background_fractions(
    mask: np.ndarray, centres: np.ndarray, *, window: float, scale: float
) -> np.ndarray:
    """Fraction of each square window that is not tissue.

    Args:
        mask: [h, w] tissue mask of a thumbnail.
        centres: [N, 2] window centres (x, y) in full-resolution pixels.
        window: Window side in full-resolution pixels.
        scale: Thumbnail pixels per full-resolution pixel.

    Returns:
        [N] floats in [0, 1]. Parts of a window outside the image count as background.
    """
    height, width = mask.shape
    half = window * scale / 2.0
    area = max((2 * half) ** 2, 1.0)
    # summed-area table: tissue pixels in any rectangle in O(1)
    table = np.zeros((height + 1, width + 1), dtype=np.int64)
    table[1:, 1:] = mask.cumsum(0).cumsum(1)
    out = np.empty(len(centres))
    for i, (x, y) in enumerate(np.asarray(centres, dtype=float) * scale):
        x0, x1 = int(np.clip(round(x - half), 0, width)), int(np.clip(round(x + half), 0, width))
        y0, y1 = int(np.clip(round(y - half), 0, height)), int(np.clip(round(y + half), 0, height))
        tissue = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
        out[i] = 1.0 - min(tissue / area, 1.0)
    return out
