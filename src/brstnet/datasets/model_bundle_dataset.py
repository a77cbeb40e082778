"""A trained model bundle (see :mod:`brstnet.training.bundle`) as a Kedro dataset."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset

from brstnet.training.bundle import ModelBundle, load_bundle, save_bundle


class ModelBundleDataset(AbstractDataset[ModelBundle, ModelBundle]):
    """A folder with model.safetensors and config.json, written atomically."""

    def __init__(self, path: str, *, metadata: dict[str, Any] | None = None) -> None:
        self._path = PurePosixPath(path)
        self.metadata = metadata

    def load(self) -> ModelBundle:
        return load_bundle(Path(self._path))

    def save(self, data: ModelBundle) -> None:
        save_bundle(data, Path(self._path))

    def _exists(self) -> bool:
        return (Path(self._path) / "model.safetensors").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
