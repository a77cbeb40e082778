"""What one variant's training on one fold reads: the fold's data, its batches and
neighbours, and the fingerprint a checkpoint is resumed by."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import anndata as ad
import numpy as np
from pandas.util import hash_pandas_object

from ..digest import file_digest
from ..features.targets import log_depth
from ..models import ModelSpec, backbone_spec
from ..st.geometry import PatchGeometry
from ..st.neighbours import spot_neighbours
from .data import PatchBatches
from .params import TrainingParams

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldData:
    """One outer fold's training data.

    Attributes:
        fold_input: The fold's model input (``model_inputs`` partition ``fold_<k>``).
        patches: [N, H, W, 3] uint8 patch store (rows as in ``fold_input.obs["patch_row"]``).
        geometry: How the patches were cut (saved in the bundle for inference).
        fold: The outer fold's number.
    """

    fold_input: ad.AnnData
    patches: np.ndarray
    geometry: PatchGeometry
    fold: int


def fold_batches(
    fold_input: ad.AnnData,
    patches: np.ndarray,
    positions: np.ndarray,
    *,
    with_aux: bool,
    with_depth: bool = False,
    depth_targets: bool = False,
    context: bool = False,
) -> PatchBatches:
    """The spots at ``positions`` of a fold's model input, with their targets (and, with
    ``with_depth``, their log total counts, for the validation's partial r; with
    ``depth_targets``, the depth head's targets)."""
    aux = np.asarray(fold_input.obsm["aux"])[positions] if with_aux else None
    depth = None
    if with_depth and "total_counts" in fold_input.obs:
        depth = log_depth(fold_input.obs["total_counts"].to_numpy(dtype=np.float64)[positions])
    neighbours, groups = None, None
    if context:
        neighbours, groups = fold_neighbours(fold_input, positions)
    depth_z = None
    if depth_targets:
        if "depth_target" not in fold_input.obs:
            raise ValueError(
                "the model has a depth head but the model inputs have no depth_target; rerun "
                "feature_selection (kedro run --pipelines=feature_selection)"
            )
        depth_z = fold_input.obs["depth_target"].to_numpy(dtype=np.float32)[positions]
    return PatchBatches(
        patches,
        fold_input.obs["patch_row"].to_numpy()[positions],
        np.asarray(fold_input.X)[positions],
        aux,
        depth,
        depth_z,
        neighbours,
        groups,
    )


def fold_neighbours(fold_input: ad.AnnData, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid neighbours of the spots at ``positions`` among themselves (positions into
    ``positions``), and their sections: a context model's spots (training, validation or
    held-out spots each see only their own set's)."""
    sections = fold_input.obs["section"].astype(str).to_numpy()[positions]
    xy = np.asarray(fold_input.obsm["spatial"], dtype=float)[positions]
    return spot_neighbours(xy, sections), sections


def fold_fingerprint(
    fold_input: ad.AnnData,
    patches: np.ndarray,
    spec: ModelSpec,
    geometry: PatchGeometry,
    cfg: TrainingParams,
) -> str:
    """A hash of everything that defines one variant's training on one fold, beyond the
    loop settings: the model spec, the patch geometry (window, size, background threshold,
    stain reference) and the patches of the fold's spots, the gene panel and auxiliary
    genes, the target transform and statistics, the targets, the spots' roles, sections
    and tissue flags, and the initial weights named in the parameters (path and content).
    """
    digest = hashlib.blake2b(digest_size=16)
    described = {
        "model": spec.to_dict(),
        "geometry": geometry.to_dict(),
        "genes": [str(g) for g in fold_input.var_names],
        "aux_genes": [str(g) for g in fold_input.uns.get("aux_genes", [])],
        "transform": str(fold_input.uns.get("transform")),
        "zscore": bool(fold_input.uns.get("zscore", True)),
        "initial_weights": cfg.initial_weights,
        # by content too: a file rewritten in place (a new pretraining) is another start
        "initial_weights_digest": file_digest(cfg.initial_weights),
        "encoder_weights": cfg.encoder_weights.get(spec.backbone),
    }
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    obs_columns = [
        c for c in ("patch_row", "role", "section", "passes_tissue") if c in fold_input.obs
    ]
    tables = (fold_input.obs[obs_columns], fold_input.var)
    for table in tables:
        digest.update(hash_pandas_object(table, index=True).to_numpy().tobytes())
    for values in (fold_input.X, fold_input.obsm.get("aux")):
        values = np.ascontiguousarray(np.zeros(0) if values is None else np.asarray(values))
        digest.update(f"{values.dtype}{values.shape}".encode() + values.tobytes())
    rows = np.sort(fold_input.obs["patch_row"].to_numpy())
    rows = rows[rows >= 0]
    for start in range(0, len(rows), 1024):  # chunked: a memory-mapped store stays out of RAM
        digest.update(np.ascontiguousarray(patches[rows[start : start + 1024]]).tobytes())
    return digest.hexdigest()


def check_encoder_geometry(backbone: str, geometry: PatchGeometry) -> None:
    """A foundation encoder sees patches at the micrometres per pixel it was trained at.

    Raises:
        ValueError: the encoder takes a fixed input size the patches do not have.
    """
    spec = backbone_spec(backbone)
    if not spec.is_encoder:
        return
    fixed = spec.kwargs.get("img_size") if not spec.kwargs.get("dynamic_img_size") else None
    if fixed is not None and geometry.size_px != fixed:
        raise ValueError(
            f"encoder {backbone} takes {fixed} px inputs, the patches are {geometry.size_px} px: "
            f"set data_processing.patches.size_px: {fixed}"
        )
    um = geometry.window_um / geometry.size_px
    if spec.um_per_px and not 0.8 <= um / spec.um_per_px <= 1.25:
        logger.warning(
            "encoder %s was trained at %.2f um/px; the patches are %.2f um/px (window %g um, "
            "%d px): set data_processing.patches.window_um to %g for %d px",
            backbone,
            spec.um_per_px,
            um,
            geometry.window_um,
            geometry.size_px,
            spec.um_per_px * geometry.size_px,
            geometry.size_px,
        )
