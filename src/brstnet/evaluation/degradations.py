"""How a slide can differ from the training slides: degraded copies of a slide, read
region by region, at the same physical window.

The conditions a user's slide can differ by (ST-Net / HEST report none of them):

- ``pixel_size``: a coarser scan (e.g. 2 or 4 um/px instead of ~0.7): the image is
  resampled (anti-aliased) to that pixel size and the window cut at it, so it covers
  the same micrometres with fewer pixels;
- ``stain_shift``: another stain protocol: haematoxylin optical density scaled by
  1 + s and eosin by 1 - s in HED space (Ruifrok and Johnston's colour deconvolution,
  scikit-image's matrices);
- ``jpeg``: lossy compression at a given quality (Pillow's encoder).

Every degraded slide is a :class:`~brstnet.st.slides.Slide` read region by region over
the original (TIFF slides are never loaded whole), and every window goes through
:func:`~brstnet.st.cutting.cut_patches` with the model's own geometry and stain
normalisation: the path a user's new slide takes through ``brstnet predict``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from skimage.color import hed_from_rgb, rgb_from_hed

from brstnet.st.slides import Slide

ORIGINAL = "original"


@dataclass(frozen=True)
class Condition:
    """One way a slide can differ from the training slides.

    Attributes:
        kind: ``original``, ``pixel_size`` (value: um/px), ``stain_shift`` (value: s),
            ``jpeg`` (value: quality).
        value: The condition's strength.
    """

    kind: Literal["original", "pixel_size", "stain_shift", "jpeg"]
    value: float = 0.0

    @property
    def name(self) -> str:
        """``original``, ``pixel_size_4um``, ``stain_shift_0.3``, ``jpeg_q50``."""
        if self.kind == ORIGINAL:
            return ORIGINAL
        if self.kind == "pixel_size":
            return f"pixel_size_{self.value:g}um"
        if self.kind == "jpeg":
            return f"jpeg_q{int(self.value)}"
        return f"stain_shift_{self.value:g}"


def conditions(
    *, pixel_sizes_um: Sequence[float], stain_shifts: Sequence[float], jpeg_qualities: Sequence[int]
) -> list[Condition]:
    """The original and every configured degradation, in that order."""
    return (
        [Condition(ORIGINAL)]
        + [Condition("pixel_size", float(v)) for v in pixel_sizes_um]
        + [Condition("stain_shift", float(v)) for v in stain_shifts]
        + [Condition("jpeg", float(v)) for v in jpeg_qualities]
    )


def hed_shift(rgb: np.ndarray, strength: float) -> np.ndarray:
    """[h, w, 3] uint8 -> the same with haematoxylin OD x (1 + s), eosin OD x (1 - s).

    Colour deconvolution with Ruifrok and Johnston's H-E-DAB matrix (scikit-image's
    ``hed_from_rgb`` / ``rgb_from_hed``) on optical densities -log((I + 1) / 256); with
    s = 0 the image comes back unchanged (skimage's ``hed2rgb(rgb2hed(x))`` does not).
    """
    od = -np.log((rgb.astype(np.float64) + 1.0) / 256.0)
    hed = od @ hed_from_rgb
    hed[..., 0] *= 1.0 + strength
    hed[..., 1] *= 1.0 - strength
    out = 256.0 * np.exp(-(hed @ rgb_from_hed)) - 1.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """[h, w, 3] uint8 encoded as JPEG at ``quality`` and decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


class TransformedSlide(Slide):
    """A slide whose every region goes through a pixel transform (stain, compression)."""

    def __init__(self, slide: Slide, transform: Callable[[np.ndarray], np.ndarray]) -> None:
        self.slide, self.transform = slide, transform
        self.width, self.height = slide.width, slide.height

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return self.transform(self.slide.region(x0, y0, x1, y1))

    def thumbnail(self) -> tuple[np.ndarray, float]:
        thumb, scale = self.slide.thumbnail()
        return self.transform(thumb), scale


class ResampledSlide(Slide):
    """A slide at a coarser pixel size: each region is read from the original and
    resampled with an anti-aliasing (Lanczos) filter, as a lower-resolution scan."""

    def __init__(self, slide: Slide, factor: float) -> None:
        if factor >= 1:
            raise ValueError(f"resampling factor {factor} must be < 1 (a coarser pixel size)")
        self.slide, self.factor = slide, factor
        self.width = max(1, int(slide.width * factor))
        self.height = max(1, int(slide.height * factor))

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        f = self.factor
        ox0, oy0 = int(np.floor(x0 / f)), int(np.floor(y0 / f))
        ox1 = min(int(np.ceil(x1 / f)), self.slide.width)
        oy1 = min(int(np.ceil(y1 / f)), self.slide.height)
        source = self.slide.region(ox0, oy0, ox1, oy1)
        return np.asarray(
            Image.fromarray(source).resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
        )

    def thumbnail(self) -> tuple[np.ndarray, float]:
        thumb, scale = self.slide.thumbnail()
        return thumb, scale / self.factor


def degraded(
    slide: Slide, pixel_size_um: float, condition: Condition
) -> tuple[Slide, float, float] | None:
    """The slide as ``condition`` changes it, its pixel size, and the factor that takes
    the original's pixel coordinates to it; None when the condition does not apply (a
    pixel size at or below the slide's own: no upsampled "scan")."""
    if condition.kind == ORIGINAL:
        return slide, pixel_size_um, 1.0
    if condition.kind == "pixel_size":
        if condition.value <= pixel_size_um:
            return None
        factor = pixel_size_um / condition.value
        return ResampledSlide(slide, factor), condition.value, factor
    if condition.kind == "stain_shift":
        shift = TransformedSlide(slide, lambda rgb: hed_shift(rgb, condition.value))
        return shift, pixel_size_um, 1.0
    if condition.kind == "jpeg":
        jpeg = TransformedSlide(slide, lambda rgb: jpeg_roundtrip(rgb, int(condition.value)))
        return jpeg, pixel_size_um, 1.0
    raise ValueError(f"unknown condition kind {condition.kind!r}")
