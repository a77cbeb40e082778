"""Tissue windows: every slide tiled into windows of the patch store's geometry.

A section's slide is tiled on a grid (``stride_um`` apart; the window by default, i.e.
non-overlapping windows); a window is kept when the tissue mask of the slide's thumbnail
(:func:`brstnet.st.tissue.tissue_mask`, the patch store's) leaves at most
``geometry.max_background_fraction`` of it background. Kept windows are cut, resized and
stain-normalised by :func:`brstnet.st.cutting.cut_patches`, the function that cuts the
patch store, so a window looks exactly like a spot's patch.

The windows of all sections go into one store with the patch store's on-disk layout
(``patches.npy`` memory-mapped, ``index.parquet``, ``meta.json``), written section by
section through :class:`brstnet.st.patch_store.PartialStore`: a killed run resumes after
the sections it finished, and nothing half-written is ever in place. Which windows a
fold pretrains on is a row selection (:func:`fold_window_rows`), so a window is cut once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..features.splits import OUTER
from ..st.cutting import check_window, cut_patches
from ..st.errors import DataError
from ..st.geometry import PatchGeometry, um_to_px
from ..st.images import ImageBuffer
from ..st.patch_store import PartialStore
from ..st.slides import Slide, open_slide
from ..st.stain import StainNormalizer
from ..st.tissue import background_fractions, tissue_mask

__all__ = [
    "WindowStoreBuild",
    "fold_sections",
    "fold_window_rows",
    "tissue_windows",
    "write_window_store",
]

logger = logging.getLogger(__name__)

#: ``meta.json``'s ``kind`` for a store of tissue windows (a patch store has none).
KIND = "tissue_windows"


def tissue_windows(
    slide: Slide,
    pixel_size_um: float,
    geometry: PatchGeometry,
    *,
    stride_um: float | None = None,
    where: str = "slide",
) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the grid windows of ``slide`` that hold tissue.

    Args:
        slide: The opened image.
        pixel_size_um: Its micrometres per pixel.
        geometry: Window (um) and background threshold (the patch store's).
        stride_um: Grid step in micrometres (None: the window, no overlap).
        where: Names the slide in errors.

    Returns:
        [n, 2] centres (x, y) in slide pixels, row by row, and their [n] background
        fractions (all <= ``geometry.max_background_fraction``).
    """
    window = check_window(
        geometry, pixel_size_um, slide, where, fix="lower data_processing.patches.window_um"
    )
    stride = um_to_px(stride_um or geometry.window_um, pixel_size_um)
    xs = np.arange(window / 2.0, slide.width - window / 2.0 + 1e-9, stride)
    ys = np.arange(window / 2.0, slide.height - window / 2.0 + 1e-9, stride)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    thumb, scale = slide.thumbnail()
    background = background_fractions(tissue_mask(thumb), grid, window=window, scale=scale)
    keep = background <= geometry.max_background_fraction
    return grid[keep], background[keep]


def _centres_sha(centres: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(centres, dtype=np.float64).tobytes()).hexdigest()


@dataclass(frozen=True)
class _Section:
    name: str
    patient: str
    image_path: str
    pixel_size_um: float
    centres: np.ndarray
    background: np.ndarray


def _plan_section(adata: ad.AnnData, name: str, geometry, stride_um, buffer) -> _Section:
    path = adata.uns["image_path"]
    pixel_size = float(adata.uns["pixel_size_um"])
    patients = adata.obs["patient"].astype(str).unique() if "patient" in adata.obs else []
    slide = open_slide(path, name, buffer=buffer)
    centres, background = tissue_windows(
        slide, pixel_size, geometry, stride_um=stride_um, where=f"section {name} (image {path})"
    )
    del slide
    if not len(centres):
        logger.warning("section %s: no window of its slide holds enough tissue", name)
    patient = str(patients[0]) if len(patients) else name
    return _Section(name, patient, str(path), pixel_size, centres, background)


def write_window_store(
    sections: Mapping[str, ad.AnnData | Callable[[], ad.AnnData]],
    geometry: PatchGeometry,
    path: str | Path,
    *,
    stride_um: float | None = None,
    dataset: str = "",
) -> None:
    """Cut every section's tissue windows into one store at ``path``, section by section.

    Each image is decoded twice (once to find its tissue windows, which size the store,
    once to cut them), one at a time into the same memory. A run killed part-way leaves
    the previous store (or none) in place, and the next run with the same sections,
    geometry and stride cuts only the sections not finished yet.

    Args:
        sections: Section name -> AnnData (``uns`` image_path, pixel_size_um; ``obs``
            patient) or a loader returning it.
        geometry: The patch store's geometry (window, size, background threshold, stain).
        path: The store folder.
        stride_um: Grid step in micrometres (None: the window).
        dataset: Name of the dataset layout, recorded in the meta.

    Raises:
        ValueError: no sections.
        DataError: no section has a tissue window, a window larger than an image, or an
            unreadable image.
    """
    if not sections:
        raise ValueError("write_window_store needs at least one section")
    buffer = ImageBuffer()
    planned = []
    try:
        for name in tqdm(sorted(sections), desc="tissue windows: plan", unit="section"):
            adata = sections[name]() if callable(sections[name]) else sections[name]
            planned.append(_plan_section(adata, name, geometry, stride_um, buffer))
            del adata
        if not sum(len(s.centres) for s in planned):
            raise DataError(
                f"no tissue window in sections {sorted(sections)}; raise "
                "data_processing.qc.max_background_fraction or check the images"
            )
        meta = {
            "dataset": dataset,
            "kind": KIND,
            "stride_um": float(stride_um or geometry.window_um),
            **geometry.to_dict(),
        }
        size = geometry.size_px
        partial = PartialStore(
            path,
            [(s.name, len(s.centres), _centres_sha(s.centres)) for s in planned],
            (size, size, 3),
            meta,
        )
        normalizer = StainNormalizer(geometry.stain_reference)
        bar = tqdm(
            total=partial.shape[0],
            initial=sum(len(planned[k].centres) for k in partial.done),
            desc="tissue windows: cut",
            unit="window",
        )
        with bar:
            for k, section in enumerate(planned):
                if k in partial.done:
                    continue
                skipped = normalizer.skipped
                windows = np.zeros((0, size, size, 3), np.uint8)
                if len(section.centres):
                    slide = open_slide(section.image_path, section.name, buffer=buffer)
                    windows = cut_patches(
                        slide,
                        section.centres,
                        geometry,
                        section.pixel_size_um,
                        normalizer=normalizer,
                    )
                    del slide
                    out = np.load(partial.patches_file, mmap_mode="r+")
                    out[partial.rows(k)] = windows
                    out.flush()
                    del out
                partial.mark_done(
                    k, _index(section, geometry), unnormalised=normalizer.skipped - skipped
                )
                logger.info("section %s: %d tissue windows", section.name, len(section.centres))
                bar.update(len(section.centres))
                bar.set_postfix_str(f"{len(partial.done)}/{len(planned)} sections")
    finally:
        buffer.release()
    partial.finish({**meta, "stain_unnormalised_patches": partial.unnormalised()})


def _index(section: _Section, geometry: PatchGeometry) -> pd.DataFrame:
    n = len(section.centres)
    return pd.DataFrame(
        {
            "obs_name": [f"{section.name}:w{i}" for i in range(n)],
            "section": np.full(n, section.name, dtype=object),
            "patient": np.full(n, section.patient, dtype=object),
            "pixel_x": section.centres[:, 0].astype(float),
            "pixel_y": section.centres[:, 1].astype(float),
            "window_px": np.full(n, geometry.window_px(section.pixel_size_um)),
            "background_fraction": section.background.astype(float),
        }
    )


@dataclass(frozen=True)
class WindowStoreBuild:
    """A window store to write (the ``pretraining_windows`` dataset writes it at its path)."""

    sections: Mapping[str, ad.AnnData | Callable[[], ad.AnnData]]
    geometry: PatchGeometry
    stride_um: float | None = None
    dataset: str = ""

    def write(self, path: str | Path) -> None:
        """Write the store at ``path`` (see :func:`write_window_store`)."""
        write_window_store(
            self.sections, self.geometry, path, stride_um=self.stride_um, dataset=self.dataset
        )


def fold_sections(splits: pd.DataFrame, fold: int, *, include_target: bool = False) -> list[str]:
    """The sections fold ``fold`` pretrains on: its training patients' (outer split), and
    with ``include_target`` its held-out patients' too (unlabelled target slides).

    Raises:
        ValueError: the fold is not in ``splits``.
    """
    outer = splits[(splits["fold"] == fold) & (splits["inner_fold"] == OUTER)]
    if outer.empty:
        raise ValueError(
            f"fold {fold} is not in the splits (folds {sorted(splits['fold'].unique())}); "
            "rerun feature_selection"
        )
    roles = ["train", "test"] if include_target else ["train"]
    return sorted(outer.loc[outer["role"].isin(roles), "section"].astype(str).unique())


def fold_window_rows(
    index: pd.DataFrame, sections: list[str], *, max_windows: int | None = None, seed: int = 0
) -> np.ndarray:
    """Store rows of the windows of ``sections`` (at most ``max_windows``, drawn with
    ``seed``), in store order.

    Raises:
        ValueError: none of ``sections`` has a window in the store.
    """
    present = set(index["section"].astype(str))
    missing = [s for s in sections if s not in present]
    rows = np.sort(index.loc[index["section"].astype(str).isin(sections), "row"].to_numpy())
    if not len(rows):
        raise ValueError(
            f"sections {sections} have no tissue windows in the store; rerun the pretraining "
            "pipeline's cut_tissue_windows (or check their images)"
        )
    if missing:
        logger.warning("sections %s have no tissue windows; pretraining without them", missing)
    if max_windows is not None and len(rows) > max_windows:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, size=max_windows, replace=False))
    return rows.astype(np.int64)
