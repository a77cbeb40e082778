"""Do the predictions hold on other scanners? A variant's held-out sections re-cut from
degraded copies of their images (:mod:`.degradations`), predicted and evaluated as the
originals are, and the share of its r each condition keeps.

Every window goes through :func:`~brstnet.st.cutting.cut_patches` with the model's own
geometry and stain normalisation: the path a user's new slide takes through
``brstnet predict``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from brstnet.features.rows import held_out_rows
from brstnet.features.targets import predicted_log_depth
from brstnet.metrics.headline import GENES_R_GT_0_5, MEDIAN_PARTIAL_R, MEDIAN_R
from brstnet.st.cutting import cut_patches
from brstnet.st.slides import open_slide
from brstnet.st.stain import StainNormalizer

from .degradations import ORIGINAL, Condition, degraded
from .predictions import check_panel, predictions_anndata
from .summary import evaluate_predictions

if TYPE_CHECKING:
    import anndata as ad

    from brstnet.st.geometry import PatchGeometry

logger = logging.getLogger(__name__)


def degraded_patches(
    fold_input: ad.AnnData,
    sections: Mapping[str, ad.AnnData | Callable[[], ad.AnnData]],
    geometry: PatchGeometry,
    conditions: Sequence[Condition],
) -> dict[str, np.ndarray]:
    """Every held-out spot of a fold, re-cut from each condition's copy of its slide.

    Args:
        fold_input: The fold's model input (obs ``section``, ``role``, ``patch_row``;
            obsm ``spatial`` = pixel centres in the section's image).
        sections: Section name -> its AnnData (uns ``image_path``, ``pixel_size_um``) or a
            loader of it; only the fold's held-out sections are read.
        geometry: The patch geometry of the store the models were trained on.
        conditions: What to cut (the original is re-cut too: it must equal the store).

    Returns:
        ``positions`` [n] (the held-out spots with a patch, :func:`held_out_rows`) and per
        condition name [n, size, size, 3] uint8. A condition that does not apply to a
        section (its pixel size is already as coarse) is left out for the whole fold.
    """
    positions = held_out_rows(fold_input)
    obs = fold_input.obs.iloc[positions]
    xy = np.asarray(fold_input.obsm["spatial"], dtype=float)[positions]
    size = geometry.size_px
    out = {c.name: np.zeros((len(positions), size, size, 3), np.uint8) for c in conditions}
    skipped: set[str] = set()
    normalizer = StainNormalizer(geometry.stain_reference)
    for section in pd.unique(obs["section"]):
        adata = sections[section]
        adata = adata() if callable(adata) else adata
        at = np.flatnonzero(obs["section"].to_numpy() == section)
        pixel = float(adata.uns["pixel_size_um"])
        slide = open_slide(adata.uns["image_path"], section)
        for condition in conditions:
            copy = degraded(slide, pixel, condition)
            if copy is None:
                skipped.add(condition.name)
                continue
            copy_slide, copy_pixel, scale = copy
            out[condition.name][at] = cut_patches(
                copy_slide, xy[at] * scale, geometry, copy_pixel, normalizer=normalizer
            )
        logger.info("robustness: %s re-cut under %d conditions", section, len(conditions))
    for name in sorted(skipped):
        logger.warning(
            "robustness: condition %s left out: a held-out slide is already that coarse", name
        )
        del out[name]
    return {"positions": positions, **out}


def evaluate_robustness(
    bundles: Sequence,
    fold_inputs: Sequence[ad.AnnData],
    degraded_by_fold: Sequence[Mapping[str, np.ndarray]],
    *,
    batch_size: int,
    device: str,
    alpha: float,
) -> pd.DataFrame:
    """A variant's held-out r and partial r under each condition, over all its folds.

    Args:
        bundles: The variant's model per fold.
        fold_inputs: The model input of each bundle's fold.
        degraded_by_fold: :func:`degraded_patches` of each fold.
        batch_size: Prediction batch size (``evaluation`` parameters).
        device: Prediction device (``evaluation`` parameters).
        alpha: Level of the sign test (the per-gene tables' ``significant``).

    Returns:
        :func:`robustness_table` (empty when no condition was cut).
    """
    # torch (the models) only when a variant is re-predicted, not to build the conditions
    from brstnet.training.data import PatchBatches
    from brstnet.training.devices import resolve_device
    from brstnet.training.fold_inputs import fold_neighbours
    from brstnet.training.loop import predict

    setup = resolve_device(device)
    names = [k for k in degraded_by_fold[0] if k != "positions"] if degraded_by_fold else []
    by_condition: dict[str, list[ad.AnnData]] = {name: [] for name in names}
    for bundle, fold_input, degraded_set in zip(
        bundles, fold_inputs, degraded_by_fold, strict=True
    ):
        check_panel(bundle.config, fold_input)
        task = bundle.build_task().to(setup.device)
        variant, fold = bundle.config["variant"], int(bundle.config["fold"])
        positions = degraded_set["positions"]
        neighbours, groups = (
            fold_neighbours(fold_input, positions) if bundle.spec.context else (None, None)
        )
        for name in names:
            patches = degraded_set[name]
            predicted, depth_z = predict(
                task,
                PatchBatches(
                    patches, np.arange(len(patches)), neighbours=neighbours, groups=groups
                ),
                setup,
                batch_size=batch_size,
                depth=True,
            )
            by_condition[name].append(
                predictions_anndata(
                    fold_input,
                    positions,
                    predicted,
                    variant=variant,
                    fold=fold,
                    predicted_log_depth=predicted_log_depth(bundle.config, depth_z),
                )
            )
    metrics = {
        name: evaluate_predictions(preds, alpha=alpha)[1] for name, preds in by_condition.items()
    }
    return robustness_table(metrics)


def robustness_table(metrics: Mapping[str, dict]) -> pd.DataFrame:
    """One row per condition: median r, median partial r, genes r > 0.5, and the share of
    the original's median r (and partial r) kept (``<figure>_kept``).

    Args:
        metrics: Condition name -> headline metrics (:func:`brstnet.metrics.summarise`),
            in the order to report; includes ``original`` unless empty.
    """
    kept = (MEDIAN_R.name, MEDIAN_PARTIAL_R.name)
    figures = (*kept, GENES_R_GT_0_5.name)
    columns = ["condition", *figures, *(f"{name}_kept" for name in kept)]
    if not metrics:
        return pd.DataFrame(columns=columns)
    base = metrics[ORIGINAL]
    rows = [
        {
            "condition": condition,
            **{name: m[name] for name in figures},
            **{f"{name}_kept": _ratio(m[name], base[name]) for name in kept},
        }
        for condition, m in metrics.items()
    ]
    return pd.DataFrame(rows, columns=columns)


def _ratio(value: float, base: float) -> float:
    return float(value / base) if np.isfinite(value) and np.isfinite(base) and base > 0 else np.nan
