"""What one variant's MLflow run holds, as plain data (the dataset does the logging)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class TrackedRun:
    """One MLflow run.

    Attributes:
        name: Run name (the variant).
        params: Flat name -> value (logged as strings).
        metrics: Flat name -> number.
        histories: Metric name -> values per step (epoch curves).
        tables: Artifact file name -> DataFrame (written as CSV).
        images: Artifact file name -> PIL image (PNG).
        models: Artifact folder -> model bundle (brstnet.training.bundle.ModelBundle).
        tags: Extra run tags.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    histories: dict[str, list[float]] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
