"""The on-disk patch store: patches, their index table and the settings that made them.

The store is a folder::

    patches.npy    [N, H, W, 3] uint8, C-contiguous: np.load(mmap_mode="r") maps it
    index.parquet  one row per patch: obs_name, spot_id, section, patient, row, ...
    meta.json      geometry (window_um, size_px), stain reference, creation details

A patch is one contiguous block of H*W*3 bytes, so a batch read is a handful of page
reads (or a copy from RAM once the store is in the page cache): at 112 px the default
store is ~40 kB a patch, and a GPU loader can also hold the whole store in pinned memory.

A large store is written section by section (:class:`PartialStore`): ``patches.npy`` is
allocated at its final size in a hidden ``.<name>-partial`` folder next to the store, each
finished section records its index rows there, and the folder is swapped in once every
section is done. A killed run leaves the previous store (or none) in place, and the next
run with the same plan resumes after the last finished section.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_file, atomic_folder
from .errors import DataError
from .geometry import PatchGeometry

__all__ = ["PartialStore", "PatchStore", "load_patch_store", "save_patch_store"]

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


def _plan_signature(plan: dict) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()


class PartialStore:
    """A patch store being written section by section, resumable after a kill.

    Layout of the hidden ``.<name>-partial`` folder next to ``path``::

        patches.npy          [N, H, W, 3] uint8, allocated at full size up front
        plan.json            sections (name, spots, first row), shape, meta and signature
        done/<k>.parquet     index rows of finished section k (written after its patches)

    Args:
        path: The store folder to produce.
        sections: (name, number of spots, fingerprint of its spots) per section, in row order.
        patch_shape: (H, W, 3) of one patch.
        meta: The store's meta (without the per-section counts added on finishing).
    """

    def __init__(
        self,
        path: str | Path,
        sections: list[tuple[str, int, str]],
        patch_shape: tuple[int, int, int],
        meta: dict,
    ) -> None:
        self.path = Path(path)
        self.folder = self.path.with_name(f".{self.path.name}-partial")
        starts = np.concatenate([[0], np.cumsum([n for _, n, _ in sections])]).tolist()
        self.sections = [
            {"section": name, "spots": n, "spots_sha": sha, "start": start}
            for (name, n, sha), start in zip(sections, starts, strict=False)
        ]
        self.shape = (int(starts[-1]), *patch_shape)
        plan = {"sections": self.sections, "shape": list(self.shape), "meta": meta}
        self.plan = {**plan, "signature": _plan_signature(plan)}
        self.done = self._open()

    def _open(self) -> set[int]:
        """Reuse a partial folder written with the same plan, else start a new one."""
        plan_file = self.folder / "plan.json"
        if plan_file.is_file() and (self.folder / "patches.npy").is_file():
            try:
                old = json.loads(plan_file.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                logger.warning(
                    "discarding the unfinished patch store %s: its %s cannot be read (%s)",
                    self.folder,
                    plan_file.name,
                    err,
                )
                old = {}
            if isinstance(old, dict) and old.get("signature") == self.plan["signature"]:
                done = {int(p.stem) for p in (self.folder / "done").glob("*.parquet")}
                if done:
                    logger.info(
                        "resuming the patch store %s: %d of %d sections already written",
                        self.path,
                        len(done),
                        len(self.sections),
                    )
                return done
            if old:
                logger.warning(
                    "discarding the unfinished patch store %s: its sections or settings changed",
                    self.folder,
                )
        shutil.rmtree(self.folder, ignore_errors=True)
        (self.folder / "done").mkdir(parents=True)
        with atomic_file(self.folder / "patches.npy") as tmp:
            # a sparse file: the disk fills as sections are written
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=self.shape).flush()
        with atomic_file(plan_file) as tmp:
            tmp.write_text(json.dumps(self.plan, indent=1, default=str))
        return set()

    @property
    def patches_file(self) -> Path:
        return self.folder / "patches.npy"

    def rows(self, k: int) -> slice:
        """Rows of section ``k`` in ``patches.npy``."""
        start = self.sections[k]["start"]
        return slice(start, start + self.sections[k]["spots"])

    def mark_done(self, k: int, index: pd.DataFrame, *, unnormalised: int = 0) -> None:
        """Record section ``k`` as finished (its patches must be flushed already), with
        the number of its patches left unnormalised."""
        if len(index) != self.sections[k]["spots"]:
            raise ValueError(
                f"section {self.sections[k]['section']}: {len(index)} index rows for "
                f"{self.sections[k]['spots']} planned spots"
            )
        with atomic_file(self.folder / "done" / f"{k:06d}.json") as tmp:
            tmp.write_text(json.dumps({"unnormalised": int(unnormalised)}))
        with atomic_file(self.folder / "done" / f"{k:06d}.parquet") as tmp:  # the done mark
            index.to_parquet(tmp)
        self.done.add(k)

    def unnormalised(self) -> int:
        """Patches left unnormalised over the finished sections."""
        return sum(
            json.loads((self.folder / "done" / f"{k:06d}.json").read_text())["unnormalised"]
            for k in self.done
        )

    def finish(self, meta: dict) -> None:
        """Write the index and meta, and swap the finished store in at ``path``."""
        missing = [s["section"] for k, s in enumerate(self.sections) if k not in self.done]
        if missing:
            raise RuntimeError(f"sections {missing} of {self.path} are not written yet")
        parts = [
            pd.read_parquet(self.folder / "done" / f"{k:06d}.parquet")
            for k in range(len(self.sections))
        ]
        index = pd.concat(parts, ignore_index=True)
        index["row"] = np.arange(len(index))
        index = index.set_index("obs_name", drop=False)
        index.index.name = None
        with atomic_folder(self.path) as tmp:
            index.to_parquet(tmp / "index.parquet")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
            os.replace(self.patches_file, tmp / "patches.npy")
        shutil.rmtree(self.folder, ignore_errors=True)
