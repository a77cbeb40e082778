"""The pretraining pipeline's own formats as Kedro datasets: the tissue-window store and
a pretrained trunk (``.safetensors``)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset

from brstnet.pretraining.weights import load_trunk, save_trunk
from brstnet.pretraining.windows import WindowStoreBuild

from .patch_store_dataset import PatchStoreDataset


class WindowStoreDataset(PatchStoreDataset):
    """A folder laid out as the patch store (``patches.npy`` memory-mapped on load,
    ``index.parquet``, ``meta.json``); saving a
    :class:`brstnet.pretraining.windows.WindowStoreBuild` writes it section by section
    (resuming after the sections an interrupted run finished)."""

    def save(self, data) -> None:
        if isinstance(data, WindowStoreBuild):
            data.write(Path(self._path))
        else:
            super().save(data)


class TrunkWeightsDataset(AbstractDataset):
    """A pretrained trunk as one ``.safetensors`` file, written atomically (its
    checkpoints removed once it is in place). Load: a
    :class:`brstnet.pretraining.weights.PretrainedTrunk` naming the file, whose weights
    :func:`brstnet.models.load_initial_weights` reads."""

    def __init__(self, filepath: str, *, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def load(self):
        return load_trunk(Path(self._filepath))

    def save(self, data) -> None:
        save_trunk(data, Path(self._filepath))

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
