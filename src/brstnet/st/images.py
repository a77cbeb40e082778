"""Decoding whole (JPEG / PNG) images once, within Pillow's decompression-bomb guard, and
resizing image patches.

JPEG / PNG images (her2st, He et al.: ~9,000 px a side) are decoded once per section,
JPEGs through libjpeg-turbo into reused memory (:class:`ImageBuffer`). Tiled TIFF slides
are read region by region by :mod:`brstnet.st.slides`.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

#: The most pixels brstnet decodes from one JPEG / PNG image: Pillow's decompression-bomb
#: limit, raised to this for the slide being opened only (the process keeps Pillow's own).
#: A her2st or He et al. image is ~92 million pixels; larger scans are read as tiled
#: pyramidal TIFFs, region by region, which Pillow does not decode.
MAX_SLIDE_PIXELS = 1_000_000_000
_PIXEL_LIMIT = threading.Lock()  # Pillow's limit is a module global


def open_image(path: str | Path, section: str) -> Image.Image:
    """``Image.open`` (the header only) with Pillow's decompression-bomb guard at
    :data:`MAX_SLIDE_PIXELS`, for this image only.

    Raises:
        DataError: an image claiming more pixels (a decompression bomb, or a whole slide
            that belongs in a tiled TIFF); Pillow's errors for a file that is no image.
    """
    with _PIXEL_LIMIT:
        default = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = MAX_SLIDE_PIXELS
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise DataError(
                f"section {section}: image {path} is larger than brstnet decodes "
                f"({MAX_SLIDE_PIXELS:,} pixels; {err}): a decompression bomb, or a whole slide "
                "to save as a tiled pyramidal TIFF (read by regions)"
            ) from err
        finally:
            Image.MAX_IMAGE_PIXELS = default
    return img


def jpeg_is_complete(data: bytes) -> bool:
    """True when a JPEG's end-of-image marker (FF D9) follows the start of its last scan
    (FF DA): a file cut anywhere after its header lacks it. Inside scan data a 0xFF byte is
    always followed by 0x00 or a restart marker, so neither marker can appear there by
    chance; an embedded (EXIF) thumbnail's markers come before the image's own scans, and
    bytes some writers append after the marker are allowed."""
    scan = data.rfind(b"\xff\xda")
    return scan >= 0 and data.find(b"\xff\xd9", scan + 2) >= 0


class ImageBuffer:
    """Memory reused for the images decoded one after another (a worker cutting one
    section after another): a JPEG is decoded into it instead of into fresh memory.

    Fresh memory costs its first touch: the kernel zeroes each page, and on a virtual
    machine whose host takes freed memory back, far more (a her2st image decoded into new
    memory took 0.25-1.0 s on the development VM, into this reused memory 0.2 s). An
    image decoded here is a view of the buffer, valid until the next image is decoded
    into it.
    """

    def __init__(self) -> None:
        self._block: np.ndarray | None = None

    def array(self, height: int, width: int) -> np.ndarray:
        """A C-contiguous [height, width, 3] uint8 view (the block grows when too small)."""
        size = height * width * 3
        if self._block is None or self._block.size < size:
            self._block = None  # the old block goes before the new one is allocated
            self._block = np.empty(size, dtype=np.uint8)
        return self._block[:size].reshape(height, width, 3)

    def release(self) -> None:
        """Drop the memory (freed once no image decoded into it is in use)."""
        self._block = None


def _decode_jpeg(
    path: str | Path, size: tuple[int, int], buffer: ImageBuffer | None, section: str
) -> np.ndarray | None:
    """An RGB JPEG through libjpeg-turbo (simplejpeg): PIL's pixels without PIL's two
    full-image copies (3-4x faster on her2st's 92 Mpx images), into ``buffer`` when given;
    None for anything else (PIL then says what is wrong).

    Strict: damaged scan data that libjpeg decodes anyway, with a "Corrupt JPEG data"
    warning, into garbled pixels (a header that still reads), is a DataError naming the
    file, not a silent success.
    """
    import simplejpeg  # loaded when a JPEG is decoded (pool workers that cut TIFFs never need it)

    try:
        data = Path(path).read_bytes()
        if not data.endswith(b"\xff\xd9"):  # no end marker: truncated (libjpeg pads it grey)
            return None
        out = None if buffer is None else buffer.array(size[1], size[0])
        image = simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out, strict=True)
    except OSError:
        return None
    except ValueError as strict:
        try:  # readable when not strict: the scan data is damaged
            simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False)
        except ValueError:
            return None  # not a JPEG libjpeg reads: PIL says what is wrong
        raise DataError(
            f"section {section}: image {path} is damaged: its header reads but its image data "
            f"does not (libjpeg: {strict}); the pixels would be garbled: replace the file"
        ) from strict
    return image if image.ndim == 3 and image.shape[2] == 3 else None


def read_image(path: str | Path, section: str, *, buffer: ImageBuffer | None = None) -> np.ndarray:
    """Decode a whole (JPEG / PNG) image once, as [H, W, 3] uint8 RGB.

    The header is read first through :func:`open_image`, so the decompression-bomb limit
    holds whichever decoder then reads the pixels (libjpeg-turbo for JPEG, into ``buffer``
    when given, else Pillow).
    """
    try:
        img = open_image(path, section)
    except FileNotFoundError as err:
        raise DataError(
            f"section {section}: image {path} is missing; put the H&E image back"
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        msg = f"section {section}: image {path} is corrupt or truncated ({err}); replace the file"
        raise DataError(msg) from err
    with img:
        if Path(path).suffix.lower() in (".jpg", ".jpeg"):
            image = _decode_jpeg(path, img.size, buffer, section)
            if image is not None:
                return image
        try:
            return np.asarray(img.convert("RGB"))
        except (OSError, SyntaxError) as err:
            msg = (
                f"section {section}: image {path} is corrupt or truncated ({err}); replace the file"
            )
            raise DataError(msg) from err


def resize(patch: np.ndarray, size: int) -> np.ndarray:
    """Resize a square patch to [size, size, 3] with an anti-aliasing filter."""
    if patch.shape[0] == size:
        return patch
    return np.asarray(Image.fromarray(patch).resize((size, size), Image.Resampling.LANCZOS))
