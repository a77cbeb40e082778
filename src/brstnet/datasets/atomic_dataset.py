"""Any single-file Kedro dataset, saved to a temporary file and renamed into place.

kedro-datasets' file datasets (pandas CSV / Parquet, JSON, pickle, Pillow, Matplotlib)
write in place: a crash or a kill mid-write leaves half a file under the final name.
:class:`AtomicDataset` wraps one of them: it saves through the wrapped dataset into a
temporary sibling (:func:`brstnet.atomic.atomic_file`, with the target's suffix so that
writers choosing the format by the file name still do) and renames it into place.

kedro-viz previews: a PNG shows as an image, a CSV as a table (``kedro viz build
--include-previews``, or the dataset's panel in ``kedro viz run``).
"""

from __future__ import annotations

import base64
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import ImagePreview, TablePreview

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
        # kedro-viz reads the kind of preview from the method's return annotation
        suffix = self._filepath.suffix.lower()
        if suffix == ".png":
            self.preview = self._image_preview
        elif suffix == ".csv":
            self.preview = self._table_preview

    def _image_preview(self) -> ImagePreview:  # kedro-viz matches the exact name
        """The PNG, base64-encoded, for kedro-viz (None before it is written)."""
        if not self._exists():
            return None
        return ImagePreview(base64.b64encode(Path(self._filepath).read_bytes()).decode("ascii"))

    def _table_preview(self, nrows: int = 5) -> TablePreview:
        """The first rows of the CSV, for kedro-viz (None before it is written)."""
        if not self._exists():
            return None
        head = pd.read_csv(Path(self._filepath), nrows=nrows)
        return TablePreview(head.to_dict(orient="split", index=False))

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
