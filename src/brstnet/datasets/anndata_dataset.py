"""AnnData <-> .h5ad as a Kedro dataset, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import anndata as ad
from kedro.io import AbstractDataset, DatasetError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AnnDataDataset(AbstractDataset[ad.AnnData, ad.AnnData]):
    """Load and save an AnnData as h5ad.

    Example catalog entry::

        sections:
          type: partitions.PartitionedDataset
          path: data/03_primary/sections
          dataset: brstnet.datasets.AnnDataDataset
          filename_suffix: .h5ad
    """

    def __init__(
        self, filepath: str, *, backed: bool = False, metadata: dict[str, Any] | None = None
    ) -> None:
        self._filepath = PurePosixPath(filepath)
        self._backed = backed
        self.metadata = metadata

    def load(self) -> ad.AnnData:
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(f"{path} does not exist; run the pipeline that writes it first")
        return ad.read_h5ad(path, backed="r" if self._backed else None)

    def save(self, data: ad.AnnData) -> None:
        path = Path(self._filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            data.write_h5ad(tmp, compression="gzip")
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600 files
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "backed": self._backed}
