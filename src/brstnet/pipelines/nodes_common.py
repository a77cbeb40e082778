"""Helpers shared by the pipelines' nodes."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["lazy_module", "load_fold", "materialise", "parse"]

T = TypeVar("T")


class _LazyModule:
    """A module imported when one of its attributes is first read (not registered in
    ``sys.modules`` until then: nothing that walks the loaded modules touches it)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name}>"


def lazy_module(name: str) -> Any:
    """``name``, imported when one of its attributes is first read.

    Kedro checks typed ``params:`` inputs by evaluating every node's type hints
    (``typing.get_type_hints``), so the names in node signatures must exist at run time;
    the heavy ones (torch behind a model bundle, matplotlib's Figure) are read through
    lazy modules, so that listing or registering pipelines stays fast.
    """
    return _LazyModule(name)


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
