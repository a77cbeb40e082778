"""Reading H&E images: small ones decoded once, large TIFFs region by region.

JPEG / PNG images (her2st, He et al.: ~9,000 px a side) are decoded once per section.
TIFF slides (Visium full-resolution images, HEST-1k pyramidal WSIs) are opened through
tifffile's zarr view: a crop reads only the tiles under it, and the thumbnail comes from
the smallest pyramid level that is large enough; the whole slide is never in memory.
Pyramids stored as SubIFDs (tifffile, OME) and as one page per level (pyvips, as HEST-1k
writes them) are both read; LZW and JPEG tiles are decoded through imagecodecs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from .errors import DataError
from .images import ImageBuffer, jpeg_is_complete, open_image, read_image

__all__ = [
    "TIFF_SUFFIXES",
    "ArraySlide",
    "Slide",
    "TiffSlide",
    "image_size",
    "open_slide",
]

THUMBNAIL_LONG_SIDE = 1200
BACKGROUND_VALUE = 255  # windows that reach past the image edge are padded with white
TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".btf")


class Slide:
    """An RGB image read by regions. Subclasses implement :meth:`region` and :meth:`thumbnail`."""

    width: int
    height: int

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Pixels [y0:y1, x0:x1] (inside the image) as [h, w, 3] uint8."""
        raise NotImplementedError

    def thumbnail(self) -> tuple[np.ndarray, float]:
        """A thumbnail (long side about 1,200 px) and its scale (thumbnail px per image px)."""
        raise NotImplementedError

    def crop(self, x: float, y: float, window: int) -> np.ndarray:
        """A [window, window, 3] crop centred on (x, y), padded with white past the edges."""
        x0, y0 = int(round(x - window / 2)), int(round(y - window / 2))
        out = np.full((window, window, 3), BACKGROUND_VALUE, dtype=np.uint8)
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + window, self.width), min(y0 + window, self.height)
        if sx1 > sx0 and sy1 > sy0:
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = self.region(sx0, sy0, sx1, sy1)
        return out


class ArraySlide(Slide):
    """An image held in memory, [H, W, 3] uint8."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.height, self.width = image.shape[:2]

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return self.image[y0:y1, x0:x1]

    def thumbnail(self) -> tuple[np.ndarray, float]:
        """Every ``factor``-th pixel of every ``factor``-th row (long side >= 1,200 px), as
        a TIFF slide's thumbnail is read from its level: a copy of 1/64 of a her2st image
        (0.015 s), where averaging each 8 x 8 block costs 10x that. The tissue mask blurs
        it (see :func:`brstnet.st.tissue.tissue_mask`); on the six default her2st
        sections the spots' background fractions move by 0.005 on average (at most
        0.06) against block means, and one spot of 1,000 crosses the 50 % threshold."""
        factor = max(1, max(self.height, self.width) // THUMBNAIL_LONG_SIDE)
        return np.ascontiguousarray(self.image[::factor, ::factor]), 1.0 / factor


class TiffSlide(Slide):
    """A (pyramidal) TIFF read tile by tile through tifffile's zarr store."""

    def __init__(self, path: Path, section: str) -> None:
        import tifffile  # heavy: loaded when a TIFF slide is opened
        import zarr

        self._path, self._section = path, section
        try:
            self._tiff = tifffile.TiffFile(path)
            series = self._tiff.series[0]
            group = zarr.open(series.aszarr(), mode="r")
        except (tifffile.TiffFileError, OSError, ValueError, KeyError) as err:
            raise DataError(
                f"section {section}: slide {path} is not a readable TIFF ({err}); replace the file"
            ) from err
        self.levels = (
            [group[str(i)] for i in range(len(series.levels))]
            if hasattr(group, "keys")
            else [group]
        )
        shape = self.levels[0].shape
        if len(shape) != 3 or shape[-1] not in (3, 4):
            raise DataError(
                f"section {section}: slide {path} has shape {shape}; an RGB(A) image [H, W, 3] is expected"
            )
        self.height, self.width = int(shape[0]), int(shape[1])

    def _read(self, level, index) -> np.ndarray:
        try:
            return np.asarray(level[index], dtype=np.uint8)
        except ValueError as err:
            if "imagecodecs" not in str(err):
                raise
            raise DataError(
                f"section {self._section}: slide {self._path} is compressed with a codec "
                f"tifffile decodes only through imagecodecs ({err}); install imagecodecs "
                "(a brstnet dependency)"
            ) from err

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return self._read(self.levels[0], np.s_[y0:y1, x0:x1, :3])

    def thumbnail(self) -> tuple[np.ndarray, float]:
        # the smallest level still at least THUMBNAIL_LONG_SIDE on its long side
        level = self.levels[0]
        for candidate in self.levels[1:]:
            if max(candidate.shape[:2]) >= THUMBNAIL_LONG_SIDE:
                level = candidate
        step = max(1, max(level.shape[:2]) // THUMBNAIL_LONG_SIDE)
        thumb = self._read(level, np.s_[::step, ::step, :3])
        return thumb, thumb.shape[1] / self.width

    def check_complete(self) -> None:
        """Every tile or strip of every level lies inside the file (a truncated copy does not).

        Raises:
            DataError: the file ends before its image data (names the file).
        """
        size = self._path.stat().st_size
        series = self._tiff.series[0]
        for level in series.levels:
            for page in level.pages:
                if page is None:
                    continue
                ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)]
                if ends and max(ends) > size:
                    raise DataError(
                        f"section {self._section}: slide {self._path} is truncated or corrupt "
                        f"(its image data runs to byte {max(ends):,}, the file has {size:,}); "
                        "replace the file"
                    )

    def close(self) -> None:
        self._tiff.close()

    def __del__(self) -> None:  # the file handle goes with the slide
        tiff = getattr(self, "_tiff", None)
        if tiff is not None:
            tiff.close()


def image_size(path: str | Path, section: str) -> tuple[int, int]:
    """Width and height, after checking that the whole image is in the file.

    A truncated file fails here, when sections are read, not when its patches are cut,
    and no image is decoded to find out (patches decode each image once): a JPEG must end
    its last scan with the end-of-image marker (:func:`jpeg_is_complete`), a PNG's chunks
    are checked through the last (CRCs), a TIFF's tiles must lie inside the file; other
    formats are decoded. Damage inside a complete JPEG's scan data shows when its patches
    are cut (a DataError naming the file).

    Raises:
        DataError: missing, unreadable, truncated or too large (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"section {section}: image {path} is missing; put the H&E image there")
    if path.suffix.lower() in TIFF_SUFFIXES:
        slide = TiffSlide(path, section)
        try:
            slide.check_complete()
        finally:
            slide.close()
        return slide.width, slide.height
    try:
        img = open_image(path, section)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(
            f"section {section}: image {path} is not a readable image ({err}); replace the file"
        ) from err
    with img:
        size = img.size
        try:
            if img.format == "JPEG":
                if not jpeg_is_complete(path.read_bytes()):
                    raise OSError("no end-of-image marker after its last scan")
            elif img.format == "PNG":
                img.verify()
            else:
                img.load()
        except (OSError, SyntaxError, ValueError) as err:
            msg = (
                f"section {section}: image {path} is truncated or corrupt ({err}); replace the file"
            )
            raise DataError(msg) from err
    return size


def open_slide(path: str | Path, section: str, *, buffer: ImageBuffer | None = None) -> Slide:
    """A TIFF as a region reader; any other image decoded once (a JPEG into ``buffer``
    when one is given)."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        if not path.is_file():
            raise DataError(f"section {section}: slide {path} is missing; put the H&E image back")
        return TiffSlide(path, section)
    return ArraySlide(read_image(path, section, buffer=buffer))
