"""Any single-file Kedro dataset, saved to a temporary file and renamed into place.

kedro-datasets' file datasets (pandas CSV / Parquet, JSON, pickle, Pillow, Matplotlib)
write in place: a crash or a kill mid-write leaves half a file under the final name.
:class:`AtomicDataset` wraps one of them: it saves through the wrapped dataset into a
temporary sibling (:func:`brstnet.atomic.atomic_file`, with the target's suffix so that
writers choosing the format by the file name still do) and renames it into place.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from brstnet.atomic import atomic_file


class AtomicDataset(AbstractDataset[Any, Any]):
    """Load and save through ``dataset``; saves are atomic (temporary file + rename).

    Example catalog entry::

        splits:
          type: brstnet.datasets.AtomicDataset
          dataset:
            type: pandas.CSVDataset
            save_args:
              index: false
          filepath: data/05_model_input/splits.csv
    """

    def __init__(
        self,
        *,
        dataset: str | dict[str, Any],
        filepath: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        config = {"type": dataset} if isinstance(dataset, str) else dict(dataset)
        if "type" not in config:
            raise DatasetError(f"AtomicDataset {filepath}: 'dataset' needs a 'type'")
        if "filepath" in config:
            raise DatasetError(
                f"AtomicDataset {filepath}: give 'filepath' to the AtomicDataset, not to its "
                "inner 'dataset'"
            )
        self._config = config
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _dataset(self, filepath: str | Path) -> AbstractDataset:
        return AbstractDataset.from_config(
            f"{self._filepath}", {**self._config, "filepath": str(filepath)}
        )

    def load(self) -> Any:
        return self._dataset(self._filepath).load()

    def save(self, data: Any) -> None:
        with atomic_file(Path(self._filepath), keep_suffix=True) as tmp:
            self._dataset(tmp).save(data)

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "dataset": self._config["type"]}
