"""Spot-centred patches and the on-disk patch store.

The store is a folder::

    patches.npy    [N, H, W, 3] uint8, C-contiguous: np.load(mmap_mode="r") maps it
    index.parquet  one row per patch: obs_name, spot_id, section, patient, row, ...
    meta.json      geometry (window_um, size_px), stain reference, creation details

A patch is one contiguous block of H*W*3 bytes, so a batch read is a handful of page
reads (or a copy from RAM once the store is in the page cache): at 112 px the default
store is ~40 kB a patch, and a GPU loader can also hold the whole store in pinned memory.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..atomic import atomic_folder
from .errors import DataError
from .geometry import um_to_px
from .stain import StainNormalizer
from .tissue import background_fractions, tissue_mask

logger = logging.getLogger(__name__)

Image.MAX_IMAGE_PIXELS = None  # full-resolution H&E is far above PIL's bomb limit
THUMBNAIL_LONG_SIDE = 1200
BACKGROUND_VALUE = 255  # windows that reach past the image edge are padded with white


@dataclass
class PatchStore:
    """Patches and their index.

    Attributes:
        patches: [N, H, W, 3] uint8 (an in-memory array or a read-only memory map).
        index: N rows; ``row`` is the position in ``patches``; indexed by obs_name.
        meta: Geometry and stain settings that produced the patches.
    """

    patches: np.ndarray
    index: pd.DataFrame
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.patches.ndim != 4 or self.patches.shape[-1] != 3 or self.patches.dtype != np.uint8:
            raise ValueError(
                f"patches must be [N, H, W, 3] uint8, got {self.patches.shape} {self.patches.dtype}"
            )
        if len(self.index) != len(self.patches):
            raise ValueError(f"index has {len(self.index)} rows for {len(self.patches)} patches")

    def __len__(self) -> int:
        return len(self.patches)

    def rows(self, obs_names: pd.Index | list[str]) -> np.ndarray:
        """Store rows of the given spots (KeyError names the first unknown one)."""
        return self.index.loc[list(obs_names), "row"].to_numpy()


def save_patch_store(store: PatchStore, path: str | Path) -> None:
    """Write a store atomically: build it in a sibling temp folder, then swap it in."""
    with atomic_folder(path) as tmp:
        out = np.lib.format.open_memmap(
            tmp / "patches.npy", mode="w+", dtype=np.uint8, shape=store.patches.shape
        )
        for start in range(0, len(store), 1024):  # chunked: a memory-mapped input stays out of RAM
            out[start : start + 1024] = store.patches[start : start + 1024]
        out.flush()
        del out
        store.index.to_parquet(tmp / "index.parquet")
        (tmp / "meta.json").write_text(json.dumps(store.meta, indent=1, default=str))


def load_patch_store(path: str | Path, *, mmap: bool = True) -> PatchStore:
    """Open a store; with ``mmap`` the patches stay on disk until read."""
    path = Path(path)
    if not (path / "patches.npy").is_file():
        raise DataError(f"no patch store at {path}; run the data_processing pipeline first")
    patches = np.load(path / "patches.npy", mmap_mode="r" if mmap else None)
    index = pd.read_parquet(path / "index.parquet")
    meta = json.loads((path / "meta.json").read_text())
    return PatchStore(patches=patches, index=index, meta=meta)


def read_image(path: str | Path, section: str) -> np.ndarray:
    """Decode a whole H&E image once, as [H, W, 3] uint8 RGB."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError as err:
        raise DataError(
            f"section {section}: image {path} is missing; put the H&E image back"
        ) from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        msg = f"section {section}: image {path} is corrupt or truncated ({err}); replace the file"
        raise DataError(msg) from err


def crop(image: np.ndarray, x: float, y: float, window: int) -> np.ndarray:
    """A [window, window, 3] crop centred on (x, y), padded with white past the edges."""
    height, width = image.shape[:2]
    x0, y0 = int(round(x - window / 2)), int(round(y - window / 2))
    out = np.full((window, window, 3), BACKGROUND_VALUE, dtype=np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + window, width), min(y0 + window, height)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def resize(patch: np.ndarray, size: int) -> np.ndarray:
    """Resize a square patch to [size, size, 3] with an anti-aliasing filter."""
    if patch.shape[0] == size:
        return patch
    return np.asarray(Image.fromarray(patch).resize((size, size), Image.Resampling.LANCZOS))


def thumbnail(image: np.ndarray) -> tuple[np.ndarray, float]:
    """A box-filtered thumbnail (long side about 1,200 px) and its scale."""
    factor = max(1, max(image.shape[:2]) // THUMBNAIL_LONG_SIDE)
    thumb = np.asarray(Image.fromarray(image).reduce(factor))
    return thumb, 1.0 / factor


def extract_section(
    adata: ad.AnnData,
    *,
    window_um: float,
    size_px: int,
    normalizer: StainNormalizer,
    max_background_fraction: float,
    image: np.ndarray | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Cut one patch per spot from the section's image (decoded once).

    Args:
        adata: A section from :func:`brstnet.st.her2st.read_section`.
        window_um: Side of the square window in micrometres.
        size_px: Side of the stored patch in pixels (model resolution).
        normalizer: Stain normaliser applied after resizing.
        max_background_fraction: Spots above it get ``passes_tissue = False``.
        image: The decoded image, when the caller already has it.

    Returns:
        [N, size_px, size_px, 3] uint8 patches and their index rows (no ``row`` yet).
    """
    section = adata.uns["section"]
    path = adata.uns["image_path"]
    if image is None:
        image = read_image(path, section)
    height, width = image.shape[:2]
    window = um_to_px(window_um, adata.uns["pixel_size_um"])
    if window > min(height, width):
        msg = (
            f"section {section}: a {window_um} um window is {window} px at "
            f"{adata.uns['pixel_size_um']:.3f} um/px, larger than image {path} "
            f"({width} x {height} px); lower data_processing.patches.window_um"
        )
        raise DataError(msg)
    centres = np.asarray(adata.obsm["spatial"], dtype=float)
    thumb, scale = thumbnail(image)
    background = background_fractions(tissue_mask(thumb), centres, window=window, scale=scale)

    patches = np.empty((len(centres), size_px, size_px, 3), dtype=np.uint8)
    skipped_before = normalizer.skipped
    for i, (x, y) in enumerate(tqdm(centres, desc=f"patches {section}", unit="spot", leave=False)):
        patches[i] = normalizer(resize(crop(image, x, y, window), size_px))
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
            "passes_tissue": background <= max_background_fraction,
        }
    )
    return patches, index
