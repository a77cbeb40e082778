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
from PIL import Image
from tqdm.auto import tqdm

from ..atomic import atomic_folder
from .errors import DataError
from .geometry import PatchGeometry
from .slides import Slide, open_slide
from .stain import StainNormalizer
from .tissue import background_fractions, tissue_mask

logger = logging.getLogger(__name__)


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

    @property
    def geometry(self) -> PatchGeometry:
        """The geometry (window, size, background threshold, stain) the patches were cut with."""
        return PatchGeometry.from_dict(self.meta)

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


def resize(patch: np.ndarray, size: int) -> np.ndarray:
    """Resize a square patch to [size, size, 3] with an anti-aliasing filter."""
    if patch.shape[0] == size:
        return patch
    return np.asarray(Image.fromarray(patch).resize((size, size), Image.Resampling.LANCZOS))


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
        normalizer = StainNormalizer(geometry.stain_reference if geometry.stain_method else None)
    centres = np.asarray(centres, dtype=float).reshape(-1, 2)
    size = geometry.size_px
    patches = np.empty((len(centres), size, size, 3), dtype=np.uint8)
    points = centres if desc is None else tqdm(centres, desc=desc, unit="spot", leave=False)
    for i, (x, y) in enumerate(points):
        patches[i] = normalizer(resize(slide.crop(x, y, window), size))
    return patches


def check_window(geometry: PatchGeometry, pixel_size_um: float, slide: Slide, where: str) -> int:
    """The window in pixels, or a DataError when it does not fit the image."""
    window = geometry.window_px(pixel_size_um)
    if window > min(slide.height, slide.width):
        msg = (
            f"{where}: a {geometry.window_um} um window is {window} px at "
            f"{pixel_size_um:.3f} um/px, larger than the image ({slide.width} x "
            f"{slide.height} px); lower data_processing.patches.window_um"
        )
        raise DataError(msg)
    return window


def extract_section(
    adata: ad.AnnData,
    geometry: PatchGeometry,
    *,
    normalizer: StainNormalizer | None = None,
    slide: Slide | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Cut one patch per spot from the section's image (decoded once, or read by regions).

    Args:
        adata: A section from :func:`brstnet.st.readers.read`.
        geometry: Window, patch size, background threshold and stain reference.
        normalizer: Stain normaliser for ``geometry.stain_reference`` (its skip count
            is reported); built from the geometry when None.
        slide: The opened image, when the caller already has it.

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
        normalizer = StainNormalizer(geometry.stain_reference if geometry.stain_method else None)
    skipped_before = normalizer.skipped
    patches = cut_patches(
        slide, centres, geometry, pixel_size, normalizer=normalizer, desc=f"patches {section}"
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
