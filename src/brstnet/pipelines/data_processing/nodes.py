"""Nodes of the data_processing pipeline (thin adapters over :mod:`brstnet.st`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd

from brstnet.config import DataProcessingParams
from brstnet.st import readers, stain
from brstnet.st.acquisition import Source
from brstnet.st.genes import check_gene_names
from brstnet.st.patches import PatchStoreBuild
from brstnet.st.qc import filter_low_reads

from ..nodes_common import materialise, parse


def acquire_raw_data(params: dict[str, Any]) -> dict:
    """Obtain the raw files of the configured sections with the dataset's layout.

    her2st is copied from ``source.local_dir`` or downloaded into data/01_raw; he2020 is
    read in place or its public zip downloaded; visium and hest are read in place.

    Args:
        params: ``data_processing`` parameters.

    Returns:
        ``raw_manifest``: dataset, root folder, per-section relative file paths and how
        they were obtained.
    """
    cfg = parse(DataProcessingParams, params)
    src = cfg.source
    source = Source(
        raw_dir=Path(src.raw_dir),
        local_dir=Path(src.local_dir) if src.local_dir else None,
        base_url=src.base_url,
        commit=src.commit,
        timeout_s=src.timeout_s,
        archive_url=src.archive_url,
        archive_sha256=src.archive_sha256,
        trust_first_download=src.trust_first_download,
        max_download_bytes=int(src.max_download_gb * 1e9),
        max_unpacked_bytes=int(src.max_unpacked_gb * 1e9),
    )
    return readers.get_layout(cfg.dataset).acquire(cfg.sections, source)


def read_sections(raw_manifest: dict, params: dict[str, Any]) -> dict[str, ad.AnnData]:
    """Read every section into AnnData (raw counts, coordinates, image path, pixel size),
    ``workers`` at once (:func:`brstnet.st.readers.read_all`).

    Args:
        raw_manifest: Output of :func:`acquire_raw_data`.
        params: ``data_processing`` parameters.

    Returns:
        ``raw_sections``: section name -> AnnData.

    Raises:
        DataError: unreadable files, or sections naming their genes in different kinds
            (Ensembl ids next to symbols: set ``reader.gene_map``).
    """
    cfg = parse(DataProcessingParams, params)
    root = Path(raw_manifest["root"])
    pixel_size = None if cfg.pixel_size_um == "auto" else float(cfg.pixel_size_um)
    options = cfg.reader
    out = readers.read_all(
        cfg.dataset,
        root,
        cfg.sections,
        pixel_size_um=pixel_size,
        spot_pitch_um=cfg.spot_pitch_um,
        max_unmatched_fraction=cfg.qc.max_unmatched_spot_fraction,
        options=options,
        workers=cfg.worker_count(),
        executor=cfg.executor,
    )
    check_gene_names({name: adata.uns["gene_names"] for name, adata in out.items()})
    return out


def filter_spots(
    raw_sections: dict, params: dict[str, Any]
) -> tuple[dict[str, ad.AnnData], pd.DataFrame]:
    """Spot QC: drop spots with fewer than ``qc.min_total_reads`` reads
    (:func:`brstnet.st.qc.filter_low_reads` on each section).

    Args:
        raw_sections: Section name -> AnnData (or its loader), from :func:`read_sections`.
        params: ``data_processing`` parameters.

    Returns:
        ``sections`` (section -> filtered AnnData) and ``spot_qc_report`` (one row per section).

    Raises:
        DataError: a section left empty.
    """
    cfg = parse(DataProcessingParams, params)
    out, rows = {}, []
    for section, adata in materialise(raw_sections).items():
        out[section], row = filter_low_reads(adata, cfg.qc.min_total_reads, section=section)
        rows.append(row)
    return out, pd.DataFrame(rows)


def fit_stain_reference(sections: dict, params: dict[str, Any]) -> dict:
    """Fit the stain normaliser on a tissue region of the reference section
    (:func:`brstnet.st.stain.fit_stain_reference`).

    Args:
        sections: Section name -> AnnData (or its loader), from :func:`filter_spots`.
        params: ``data_processing`` parameters (``stain.reference_section``: None for the
            first section).

    Returns:
        ``stain_reference``: JSON-ready stain vectors, or ``{"method": None}`` when off.
    """
    cfg = parse(DataProcessingParams, params)
    if cfg.stain.method is None:
        return {"method": None}
    name = cfg.stain.reference_section or cfg.sections[0]
    section = spots_loader(sections[name])  # positions and image only: no counts read
    adata = section() if callable(section) else section
    return stain.fit_stain_reference(adata, window_um=cfg.stain.reference_window_um, section=name)


def extract_patches(
    sections: dict, stain_reference: dict, params: dict[str, Any]
) -> PatchStoreBuild:
    """Cut, resize and stain-normalise one patch per spot; check tissue cover
    (:func:`brstnet.st.patches.write_patch_store`, sections in name order, ``workers`` at
    once in processes, or as tasks on the Dask runner's cluster).

    Args:
        sections: Section name -> AnnData (or its loader), from :func:`filter_spots`.
        stain_reference: Output of :func:`fit_stain_reference`.
        params: ``data_processing`` parameters.

    Returns:
        ``patch_store``: the store to write; ``PatchStoreDataset`` writes its
        [N, size, size, 3] uint8 patches to disk section by section, with their index table.
    """
    cfg = parse(DataProcessingParams, params)
    return PatchStoreBuild(
        # loaders stay lazy (one section in memory at a time) and read no counts
        {name: spots_loader(section) for name, section in sorted(sections.items())},
        cfg.geometry(stain_reference),
        dataset=cfg.dataset,
        workers=cfg.worker_count(),
        executor=cfg.executor,
    )


def spots_loader(
    section: ad.AnnData | Callable[[], ad.AnnData],
) -> ad.AnnData | Callable[[], ad.AnnData]:
    """The loader PartitionedDataset gives for an ``AnnDataDataset`` partition (its bound
    ``load``) swapped for the dataset's ``load_spots``: the spots' positions and image,
    without their counts. An AnnData or any other loader is returned as it is."""
    dataset = getattr(section, "__self__", None)
    if getattr(section, "__name__", None) == "load" and hasattr(dataset, "load_spots"):
        return dataset.load_spots
    return section
