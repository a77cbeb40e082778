"""The former per-patch code paths, kept to check that the faster ones give the same numbers."""

from __future__ import annotations

import numpy as np
from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

from brstnet.st.images import resize
from brstnet.st.slides import Slide
from brstnet.st.stain import MIN_STAINED_PIXELS, OD_BETA


def stained_pixels(image: np.ndarray, *, io: int = 240) -> int:
    """Pixels whose optical density (torchstain's) is at least ``OD_BETA`` in every channel."""
    od = -np.log((image.reshape(-1, 3) + 1.0) / io)
    return int((od >= OD_BETA).all(axis=1).sum())


def torchstain_fit(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torchstain's own fit: its stain matrix and maximum concentrations."""
    macenko = NumpyMacenkoNormalizer()
    macenko.fit(reference)
    return np.asarray(macenko.HERef), np.asarray(macenko.maxCRef)


def torchstain_patch_by_patch(reference: dict, patches: np.ndarray) -> tuple[np.ndarray, int]:
    """The former per-patch normalisation: torchstain on each patch with enough stain."""
    macenko = NumpyMacenkoNormalizer()
    macenko.HERef = np.asarray(reference["he_ref"])
    macenko.maxCRef = np.asarray(reference["max_c_ref"])
    out, skipped = patches.copy(), 0
    for i, patch in enumerate(patches):
        if stained_pixels(patch) < MIN_STAINED_PIXELS:
            skipped += 1
            continue
        with np.errstate(all="ignore"):
            out[i] = macenko.normalize(patch, stains=False)[0]
    return out, skipped


def cut_patch_by_patch(
    slide: Slide, centres: np.ndarray, window: int, size: int, reference: dict
) -> np.ndarray:
    """The former cut_patches: crop, resize and normalise one spot after the other."""
    crops = np.stack([resize(slide.crop(x, y, window), size) for x, y in centres])
    return torchstain_patch_by_patch(reference, crops)[0]
