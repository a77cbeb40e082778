"""Nodes of the data_processing pipeline (thin adapters over :mod:`brstnet.st`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from brstnet.config import DataProcessingParams
from brstnet.st import readers
from brstnet.st.acquisition import Source
from brstnet.st.errors import DataError
from brstnet.st.geometry import um_to_px
from brstnet.st.patches import PatchStore, extract_section, resize
from brstnet.st.slides import open_slide
from brstnet.st.stain import StainNormalizer, fit_macenko

from ..nodes_common import materialise, parse

logger = logging.getLogger(__name__)


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
    )
    return readers.get_layout(cfg.dataset).acquire(cfg.sections, source)


def read_sections(raw_manifest: dict, params: dict[str, Any]) -> dict[str, ad.AnnData]:
    """Read every section into AnnData (raw counts, coordinates, image path, pixel size).

    Args:
        raw_manifest: Output of :func:`acquire_raw_data`.
        params: ``data_processing`` parameters.

    Returns:
        ``raw_sections``: section name -> AnnData.
    """
    cfg = parse(DataProcessingParams, params)
    root = Path(raw_manifest["root"])
    pixel_size = None if cfg.pixel_size_um == "auto" else float(cfg.pixel_size_um)
    options = readers.ReaderOptions(**cfg.reader.model_dump())
    out = {}
    for section in tqdm(cfg.sections, desc="read sections", unit="section"):
        out[section] = readers.read(
            cfg.dataset,
            root,
            section,
            pixel_size_um=pixel_size,
            spot_pitch_um=cfg.spot_pitch_um,
            max_unmatched_fraction=cfg.qc.max_unmatched_spot_fraction,
            options=options,
        )
    return out


def filter_spots(
    raw_sections: dict, params: dict[str, Any]
) -> tuple[dict[str, ad.AnnData], pd.DataFrame]:
    """Spot QC: drop spots with fewer than ``qc.min_total_reads`` reads.

    Returns:
        ``sections`` (section -> filtered AnnData) and ``spot_qc_report`` (one row per section).

    Raises:
        DataError: a section left empty.
    """
    cfg = parse(DataProcessingParams, params)
    threshold = cfg.qc.min_total_reads
    out, rows = {}, []
    for section, adata in materialise(raw_sections).items():
        keep = adata.obs["total_counts"].to_numpy() >= threshold
        if not keep.any():
            msg = (
                f"section {section}: no spot has {threshold} or more reads (the most is "
                f"{int(adata.obs['total_counts'].max())}; file {adata.uns.get('image_path')}); "
                "lower data_processing.qc.min_total_reads or drop the section"
            )
            raise DataError(msg)
        kept = adata[keep].copy()
        kept.uns["qc"] = {"min_total_reads": threshold}
        out[section] = kept
        rows.append(
            {
                "section": section,
                "patient": adata.uns["patient"],
                "spots": adata.n_obs,
                "dropped_low_reads": int((~keep).sum()),
                "kept": int(keep.sum()),
                "median_reads_kept": float(np.median(kept.obs["total_counts"])),
                "pixel_size_um": adata.uns["pixel_size_um"],
            }
        )
        logger.info(
            "section %s: %d spots, %d dropped (< %d reads), %d kept",
            section,
            adata.n_obs,
            int((~keep).sum()),
            threshold,
            int(keep.sum()),
        )
    return out, pd.DataFrame(rows)


def fit_stain_reference(sections: dict, params: dict[str, Any]) -> dict:
    """Fit the stain normaliser on a tissue region of the reference section.

    Returns:
        ``stain_reference``: JSON-ready stain vectors, or ``{"method": None}`` when off.
    """
    cfg = parse(DataProcessingParams, params)
    if cfg.stain.method is None:
        return {"method": None}
    name = cfg.stain.reference_section or cfg.sections[0]
    adata = sections[name]() if callable(sections[name]) else sections[name]
    slide = open_slide(adata.uns["image_path"], name)
    window = min(
        um_to_px(cfg.stain.reference_window_um, adata.uns["pixel_size_um"]),
        slide.width,
        slide.height,
    )
    x, y = np.median(adata.obsm["spatial"], axis=0)
    region = resize(slide.crop(x, y, window), min(window, 1024))
    reference = fit_macenko(region)
    reference.update(
        {
            "section": name,
            "centre_px": [float(x), float(y)],
            "window_um": cfg.stain.reference_window_um,
        }
    )
    logger.info(
        "stain reference: Macenko on a %.0f um region of section %s",
        cfg.stain.reference_window_um,
        name,
    )
    return reference


def extract_patches(sections: dict, stain_reference: dict, params: dict[str, Any]) -> PatchStore:
    """Cut, resize and stain-normalise one patch per spot; check tissue cover.

    Returns:
        ``patch_store``: [N, size, size, 3] uint8 patches with their index table.
    """
    cfg = parse(DataProcessingParams, params)
    geometry = cfg.geometry(stain_reference)
    normalizer = StainNormalizer(stain_reference if geometry.stain_method else None)
    all_patches, indices = [], []
    for section, adata in tqdm(
        materialise(sections).items(), desc="extract patches", unit="section"
    ):
        patches, index = extract_section(adata, geometry, normalizer=normalizer)
        flagged = int((~index["passes_tissue"]).sum())
        logger.info(
            "section %s: %d patches, %d over %.0f%% background (kept, excluded from training)",
            section,
            len(index),
            flagged,
            100 * geometry.max_background_fraction,
        )
        all_patches.append(patches)
        indices.append(index)
    index = pd.concat(indices, ignore_index=True)
    index["row"] = np.arange(len(index))
    index = index.set_index("obs_name", drop=False)
    index.index.name = None
    meta = {
        "dataset": cfg.dataset,
        **geometry.to_dict(),
        "stain_unnormalised_patches": normalizer.skipped,
    }
    return PatchStore(patches=np.concatenate(all_patches), index=index, meta=meta)
