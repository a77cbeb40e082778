"""The patch store (see :mod:`brstnet.st.patches`) as a Kedro dataset."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset

from brstnet.st.patches import PatchStore, PatchStoreBuild, load_patch_store, save_patch_store


class PatchStoreDataset(AbstractDataset[PatchStore | PatchStoreBuild, PatchStore]):
    """A folder holding patches.npy (memory-mapped on load), index.parquet and meta.json.

    Saves a :class:`PatchStore`, or writes a :class:`PatchStoreBuild` section by section
    (resuming after the sections an interrupted run finished).
    """

    def __init__(
        self, path: str, *, mmap: bool = True, metadata: dict[str, Any] | None = None
    ) -> None:
        self._path = PurePosixPath(path)
        self._mmap = mmap
        self.metadata = metadata

    def load(self) -> PatchStore:
        return load_patch_store(Path(self._path), mmap=self._mmap)

    def save(self, data: PatchStore | PatchStoreBuild) -> None:
        if isinstance(data, PatchStoreBuild):
            data.write(Path(self._path))
        else:
            save_patch_store(data, Path(self._path))

    def _exists(self) -> bool:
        return (Path(self._path) / "patches.npy").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "mmap": self._mmap}
