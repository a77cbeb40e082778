"""The patch store of a run: every section's spot patches (cut by
:mod:`brstnet.st.cutting`) in one :class:`PatchStore`, built in memory
(:func:`build_patch_store`) or written section by section, ``workers`` at once
(:func:`write_patch_store`).

The on-disk store lives in :mod:`brstnet.st.patch_store` (its :class:`PatchStore` is the
type the pipelines read), the cutting in :mod:`brstnet.st.cutting`.
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

from .cutting import extract_section
from .executors import each_section, resolve_executor
from .geometry import PatchGeometry
from .images import ImageBuffer
from .patch_store import PartialStore, PatchStore, load_patch_store, save_patch_store
from .slides import open_slide
from .stain import StainNormalizer

__all__ = [
    "PatchStore",
    "PatchStoreBuild",
    "build_patch_store",
    "load_patch_store",
    "save_patch_store",
    "write_patch_store",
]

logger = logging.getLogger(__name__)


def build_patch_store(
    sections: Mapping[str, ad.AnnData | Callable[[], ad.AnnData]],
    geometry: PatchGeometry,
    *,
    dataset: str,
) -> PatchStore:
    """Cut one patch per spot of every section into one store, sections in mapping order.

    Args:
        sections: Section name -> AnnData from :func:`brstnet.st.readers.read` (after QC),
            or a loader returning it (called once, when its section's turn comes).
        geometry: Window, patch size, background threshold and stain reference.
        dataset: Name of the dataset layout, recorded in the meta.

    Returns:
        A store of the N spots of all sections: [N, size_px, size_px, 3] uint8 patches,
        an index with ``row`` 0..N-1 (indexed by obs_name), and a meta holding the
        geometry (``PatchStore.geometry`` rebuilds it), the dataset and the number of
        patches left unnormalised.

    Raises:
        ValueError: ``sections`` is empty.
        DataError: a window larger than a section's image, or an unreadable image.
    """
    if not sections:
        raise ValueError("build_patch_store needs at least one section")
    normalizer = StainNormalizer(geometry.stain_reference)
    all_patches, indices = [], []
    for section, adata in tqdm(sections.items(), desc="extract patches", unit="section"):
        if callable(adata):
            adata = adata()
        patches, index = extract_section(adata, geometry, normalizer=normalizer)
        _log_section(section, index, geometry)
        all_patches.append(patches)
        indices.append(index)
    index = pd.concat(indices, ignore_index=True)
    index["row"] = np.arange(len(index))
    index = index.set_index("obs_name", drop=False)
    index.index.name = None
    meta = {
        "dataset": dataset,
        **geometry.to_dict(),
        "stain_unnormalised_patches": normalizer.skipped,
    }
    return PatchStore(patches=np.concatenate(all_patches), index=index, meta=meta)


def _log_section(section: str, index: pd.DataFrame, geometry: PatchGeometry) -> None:
    flagged = int((~index["passes_tissue"]).sum())
    logger.info(
        "section %s: %d patches, %d over %.0f%% background (kept, excluded from training)",
        section,
        len(index),
        flagged,
        100 * geometry.max_background_fraction,
    )


def _fingerprint(adata: ad.AnnData) -> str:
    """Identifies a section's spots, centres and image (a changed section is cut again)."""
    digest = hashlib.sha256()
    digest.update("\n".join(map(str, adata.obs_names)).encode())
    digest.update(np.ascontiguousarray(adata.obsm["spatial"], dtype=float).tobytes())
    digest.update(f"{adata.uns['image_path']}|{float(adata.uns['pixel_size_um'])!r}".encode())
    return digest.hexdigest()


#: The image memory of the sections this process cuts one after another (see
#: :class:`brstnet.st.images.ImageBuffer`): kept by pool workers until they exit, freed
#: after each section on a Dask worker and at the end of an in-process write.
_IMAGES = ImageBuffer()


def _cut_into(
    adata: ad.AnnData | Callable[[], ad.AnnData],
    geometry: PatchGeometry,
    patches_file: Path,
    rows: slice,
    keep_image_memory: bool = False,
) -> tuple[pd.DataFrame, int]:
    """Cut one section into ``rows`` of a memory-mapped ``patches.npy`` (runs in a worker).

    Returns:
        The section's index rows and how many of its patches were left unnormalised.
    """
    from threadpoolctl import threadpool_limits  # loaded in pool workers only

    if callable(adata):
        adata = adata()
    normalizer = StainNormalizer(geometry.stain_reference)
    try:
        slide = open_slide(adata.uns["image_path"], adata.uns["section"], buffer=_IMAGES)
        # the stain arithmetic is on [3, 2] matrices: BLAS threads only compete with the workers
        with threadpool_limits(limits=1):
            patches, index = extract_section(
                adata, geometry, normalizer=normalizer, slide=slide, progress=False
            )
        del slide
    finally:
        if not keep_image_memory:
            _IMAGES.release()
    out = np.load(patches_file, mmap_mode="r+")
    out[rows] = patches
    out.flush()
    del out
    return index, normalizer.skipped


def write_patch_store(
    sections: Mapping[str, ad.AnnData | Callable[[], ad.AnnData]],
    geometry: PatchGeometry,
    path: str | Path,
    *,
    dataset: str,
    workers: int = 1,
    executor: str = "processes",
) -> None:
    """Write the store :func:`build_patch_store` builds straight to disk, section by section.

    ``patches.npy`` is allocated at its final size (from the spot counts) in a hidden
    partial folder next to ``path``; each section is cut (in one of ``workers`` processes)
    into its rows, and the folder is swapped in at ``path`` when all are done (see
    :class:`brstnet.st.patch_store.PartialStore`). Memory holds one decoded image and one
    section's patches per worker, whatever the number of spots. A run killed part-way
    leaves the previous store in place; the next run with the same sections and geometry
    cuts only the sections not finished yet. The result is byte for byte the store of
    :func:`build_patch_store`, for any ``workers``.

    Args:
        sections: Section name -> AnnData or a loader returning it (called once to count
            the spots, and once more when the section is cut).
        geometry: Window, patch size, background threshold and stain reference.
        path: The store folder.
        dataset: Name of the dataset layout, recorded in the meta.
        workers: Processes cutting sections at the same time (1: in this process).
        executor: ``processes``, ``dask`` or ``auto`` (see :mod:`brstnet.st.executors`).

    Raises:
        ValueError: ``sections`` is empty or ``workers`` < 1.
        DataError: a window larger than a section's image, or an unreadable image.
    """
    if not sections:
        raise ValueError("write_patch_store needs at least one section")
    if workers < 1:
        raise ValueError(f"workers must be 1 or more, got {workers}")
    names = list(sections)
    plan = []
    for name in names:  # spot counts size the store; each AnnData is dropped at once
        adata = sections[name]() if callable(sections[name]) else sections[name]
        plan.append((name, adata.n_obs, _fingerprint(adata)))
        del adata
    meta = {"dataset": dataset, **geometry.to_dict()}
    size = geometry.size_px
    partial = PartialStore(path, plan, (size, size, 3), meta)
    todo = [k for k in range(len(names)) if k not in partial.done]
    bar = tqdm(
        total=partial.shape[0],
        initial=sum(plan[k][1] for k in partial.done),
        desc="extract patches",
        unit="spot",
    )

    def finished(k: int, index: pd.DataFrame, unnormalised: int) -> None:
        _log_section(names[k], index, geometry)
        partial.mark_done(k, index, unnormalised=unnormalised)
        bar.update(len(index))
        bar.set_postfix_str(f"{len(partial.done)}/{len(names)} sections")

    # a process cutting several sections decodes them into the same memory; a Dask worker
    # lives on after the run and frees it after each section
    keep = resolve_executor(executor) == "processes"
    jobs = [
        (sections[names[k]], geometry, partial.patches_file, partial.rows(k), keep) for k in todo
    ]
    try:
        with bar:
            for j, (index, unnormalised) in each_section(
                _cut_into, jobs, executor=executor, workers=workers
            ):
                finished(todo[j], index, unnormalised)
    finally:
        _IMAGES.release()  # the sections cut in this process (one worker)
    partial.finish({**meta, "stain_unnormalised_patches": partial.unnormalised()})


@dataclass(frozen=True)
class PatchStoreBuild:
    """A patch store to write: everything :func:`write_patch_store` needs but the path.

    The extract_patches node returns one; ``PatchStoreDataset.save`` writes it at the
    dataset's path, so the patches go straight to disk instead of through memory.
    """

    sections: Mapping[str, ad.AnnData | Callable[[], ad.AnnData]]
    geometry: PatchGeometry
    dataset: str
    workers: int = 1
    executor: str = "processes"

    def write(self, path: str | Path) -> None:
        """Write the store at ``path`` (see :func:`write_patch_store`)."""
        write_patch_store(
            self.sections,
            self.geometry,
            path,
            dataset=self.dataset,
            workers=self.workers,
            executor=self.executor,
        )
