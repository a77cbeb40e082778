"""Kedro runners: :class:`DaskRunner` runs the sweep on dask.distributed
(``kedro run --runner=brstnet.runners.DaskRunner``).

Names are imported on first use, so that a Dask worker importing
:mod:`brstnet.runners.worker` does not import the runner (and Kedro's runners) with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DaskConfigHook": "hooks",
    "DaskRunner": "dask_runner",
    "DaskRunnerError": "dask_runner",
    "DaskSettings": "config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
