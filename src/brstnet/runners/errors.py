"""The Dask runner's errors for something a user can fix (``kedro run`` ends them in one
block, :mod:`brstnet.cli`)."""

from __future__ import annotations


class ClusterError(RuntimeError):
    """The configured cluster cannot run this pipeline (the message says what to change)."""


class DaskRunnerError(RuntimeError):
    """The pipeline cannot run on Dask as configured (the message says what to change)."""
