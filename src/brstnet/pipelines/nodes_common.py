"""Helpers shared by the pipelines' nodes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["load_fold", "materialise", "parse"]

T = TypeVar("T")


def materialise(partitions: Mapping[str, Callable[[], T] | T]) -> dict[str, T]:
    """Load a PartitionedDataset input (values are loaders) into a plain dict."""
    return {key: value() if callable(value) else value for key, value in sorted(partitions.items())}


def parse(model: type[T], params: Mapping[str, Any]) -> T:
    """Validate a parameter block into its typed model (errors name the bad key)."""
    return model.model_validate(dict(params))  # type: ignore[attr-defined]


def load_fold(model_inputs: dict, fold: int) -> ad.AnnData:
    """The ``fold_<k>`` partition of ``model_inputs`` (loaded if lazy)."""
    key = f"fold_{fold}"
    if key not in model_inputs:
        raise KeyError(
            f"no model input for fold {fold} (have {sorted(model_inputs)}); the folds of "
            "feature_selection and the namespaces of model_training disagree: rerun feature_selection"
        )
    value = model_inputs[key]
    return value() if callable(value) else value
