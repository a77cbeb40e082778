"""Which spots of a fold's model input train and which test (plain pandas/NumPy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import anndata as ad


def training_rows(fold_input: ad.AnnData, sections: list[str] | None = None) -> np.ndarray:
    """Positions of training spots (role train, patch over tissue), optionally within ``sections``."""
    obs = fold_input.obs
    keep = (obs["role"] == "train") & obs["passes_tissue"] & (obs["patch_row"] >= 0)
    if sections is not None:
        keep &= obs["section"].isin(sections)
    return np.flatnonzero(keep.to_numpy())


def validation_rows(fold_input: ad.AnnData, sections: list[str]) -> np.ndarray:
    """Positions of every spot with a patch in ``sections`` (validation is not tissue-filtered)."""
    obs = fold_input.obs
    keep = obs["section"].isin(sections).to_numpy() & (obs["patch_row"] >= 0).to_numpy()
    return np.flatnonzero(keep)


def held_out_rows(fold_input: ad.AnnData) -> np.ndarray:
    """Every held-out spot with a patch (the tissue check filters training, not testing)."""
    obs = fold_input.obs
    return np.flatnonzero(((obs["role"] == "test") & (obs["patch_row"] >= 0)).to_numpy())
