"""Kedro runners: :class:`DaskRunner` runs the sweep on dask.distributed
(``kedro run --runner=brstnet.runners.DaskRunner``)."""

from .config import DaskSettings
from .dask_runner import DaskRunner, DaskRunnerError
from .hooks import DaskConfigHook

__all__ = ["DaskConfigHook", "DaskRunner", "DaskRunnerError", "DaskSettings"]
