"""Spot quality control: drop spots with too few reads."""

from __future__ import annotations

import logging
from typing import Any

import anndata as ad
import numpy as np

from .errors import DataError

logger = logging.getLogger(__name__)


def filter_low_reads(
    adata: ad.AnnData, min_total_reads: int, *, section: str | None = None
) -> tuple[ad.AnnData, dict[str, Any]]:
    """Keep the spots with at least ``min_total_reads`` reads.

    Args:
        adata: A section from :func:`brstnet.st.readers.read`: N spots with
            ``obs["total_counts"]`` [N] and ``uns["patient"]``, ``uns["pixel_size_um"]``.
        min_total_reads: Spots with fewer reads are dropped.
        section: Name of the section (for messages and the report); ``uns["section"]``
            when None.

    Returns:
        The kept spots (a copy, with ``uns["qc"] = {"min_total_reads": ...}``) and one
        report row: section, patient, spots, dropped_low_reads, kept, median_reads_kept,
        pixel_size_um.

    Raises:
        DataError: no spot of the section reaches the threshold.
    """
    name = adata.uns["section"] if section is None else section
    keep = adata.obs["total_counts"].to_numpy() >= min_total_reads
    if not keep.any():
        msg = (
            f"section {name}: no spot has {min_total_reads} or more reads (the most is "
            f"{int(adata.obs['total_counts'].max())}; file {adata.uns.get('image_path')}); "
            "lower data_processing.qc.min_total_reads or drop the section"
        )
        raise DataError(msg)
    kept = adata[keep].copy()
    kept.uns["qc"] = {"min_total_reads": min_total_reads}
    dropped, n_kept = int((~keep).sum()), int(keep.sum())
    row = {
        "section": name,
        "patient": adata.uns["patient"],
        "spots": adata.n_obs,
        "dropped_low_reads": dropped,
        "kept": n_kept,
        "median_reads_kept": float(np.median(kept.obs["total_counts"])),
        "pixel_size_um": adata.uns["pixel_size_um"],
    }
    logger.info(
        "section %s: %d spots, %d dropped (< %d reads), %d kept",
        name,
        adata.n_obs,
        dropped,
        min_total_reads,
        n_kept,
    )
    return kept, row
