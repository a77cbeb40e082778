"""Kedro runners: :class:`DaskRunner` runs the sweep on dask.distributed
(``kedro run --runner=brstnet.runners.DaskRunner``).

Names are imported on first use, so that a Dask worker importing
:mod:`brstnet.runners.worker` does not import the runner (and Kedro's runners) with it.

Modules: :mod:`~brstnet.runners.dask_runner` (the runner), :mod:`~brstnet.runners.config`
(``dask.yml``), :mod:`~brstnet.runners.hooks` (the session's ``dask.yml``),
:mod:`~brstnet.runners.payloads` (what tasks carry), :mod:`~brstnet.runners.scheduling`
(submitting and waiting), :mod:`~brstnet.runners.clusters` (starting and checking a
cluster: :mod:`~brstnet.runners.cluster`, :mod:`~brstnet.runners.local_clusters`,
:mod:`~brstnet.runners.slurm_cluster`, :mod:`~brstnet.runners.slurm_jobs`),
:mod:`~brstnet.runners.worker` (what runs on a worker), :mod:`~brstnet.runners.errors`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DaskConfigHook": "hooks",
    "DaskRunner": "dask_runner",
    "DaskRunnerError": "errors",
    "DaskSettings": "config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The exported name, its module imported now (see the module docstring)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
