"""Helpers shared by the pipelines' nodes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def materialise(partitions: Mapping[str, Callable[[], T] | T]) -> dict[str, T]:
    """Load a PartitionedDataset input (values are loaders) into a plain dict."""
    return {key: value() if callable(value) else value for key, value in sorted(partitions.items())}


def parse(model: type[T], params: Mapping[str, Any]) -> T:
    """Validate a parameter block into its typed model (errors name the bad key)."""
    return model.model_validate(dict(params))  # type: ignore[attr-defined]
