"""The on-disk patch store: patches, their index table and the settings that made them.

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_folder
from .errors import DataError
from .geometry import PatchGeometry

__all__ = ["PatchStore", "load_patch_store", "save_patch_store"]


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
