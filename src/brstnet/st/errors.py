"""Errors raised for bad input data."""

from __future__ import annotations


class DataError(ValueError):
    """Input data that cannot be used as given.

    The message names the file and section concerned and says what to fix.
    """


class AcquisitionError(RuntimeError):
    """Raw data could not be obtained (no local copy, download failed, bad checksum)."""
