"""Baselines every model is read against.

- ``training_mean``: predicts each gene's training mean everywhere. Its correlations
  are undefined (NaN, counted); its errors are the floor a model must beat.
- ``ridge``: ridge regression (cross-validated penalty) on simple colour, texture and
  layout features of the same patches, fitted on the fold's training spots.
- ``reference_read_depth``: not a model but a reference for how much of a model's r is
  read depth. It "predicts" every gene by the held-out spot's own log total count,
  which it takes from the test counts: its r is each gene's correlation with depth.

:func:`baseline_predictions` runs all three on one fold and returns predictions tables
like a model's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from skimage.color import rgb2gray, rgb2hsv
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brstnet.features.rows import held_out_rows, training_rows

from .predictions import predictions_anndata

if TYPE_CHECKING:
    import anndata as ad

ALPHAS = np.logspace(-2, 4, 13)

#: The read-depth reference's label (a "variant" that is not a model).
READ_DEPTH = "reference_read_depth"


def image_features(patches: np.ndarray, *, batch: int = 256) -> np.ndarray:
    """Hand-made features of [N, H, W, 3] uint8 patches -> [N, 31] float.

    RGB and HSV channel means and standard deviations (12), gradient magnitude mean
    and std (2), fraction of dark (nuclear) pixels (1), and a 4 x 4 grey thumbnail (16).
    """
    out = []
    for start in range(0, len(patches), batch):
        x = np.asarray(patches[start : start + batch], dtype=np.float32) / 255.0
        n, h, w, _ = x.shape
        hsv = rgb2hsv(x)
        gray = rgb2gray(x)
        gy, gx = np.gradient(gray, axis=(1, 2))
        grad = np.sqrt(gx**2 + gy**2)
        thumb = (
            gray[:, : h - h % 4, : w - w % 4]
            .reshape(n, 4, h // 4, 4, w // 4)
            .mean(axis=(2, 4))
            .reshape(n, 16)
        )
        out.append(
            np.concatenate(
                [
                    x.mean(axis=(1, 2)),
                    x.std(axis=(1, 2)),
                    hsv.mean(axis=(1, 2)),
                    hsv.std(axis=(1, 2)),
                    grad.mean(axis=(1, 2))[:, None],
                    grad.std(axis=(1, 2))[:, None],
                    (gray < 0.5).mean(axis=(1, 2))[:, None],
                    thumb,
                ],
                axis=1,
            )
        )
    return np.concatenate(out) if out else np.zeros((0, 31))


def training_mean(train_targets: np.ndarray, n_test: int) -> np.ndarray:
    """[n_test, n_genes]: every gene's training mean."""
    return np.repeat(
        np.asarray(train_targets, dtype=np.float64).mean(axis=0, keepdims=True), n_test, axis=0
    ).astype(np.float32)


def ridge(
    train_features: np.ndarray, train_targets: np.ndarray, test_features: np.ndarray
) -> np.ndarray:
    """Standardised features -> RidgeCV (penalty chosen by leave-one-out on training spots)."""
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
    model.fit(train_features, train_targets)
    return model.predict(test_features).astype(np.float32)


def read_depth(fold_input: ad.AnnData, rows: np.ndarray) -> np.ndarray:
    """[len(rows), n_genes]: the spots' own log total count, standardised over ``rows``,
    for every gene (the read-depth reference; it uses the test spots' counts)."""
    depth = np.log(np.maximum(fold_input.obs["total_counts"].to_numpy(np.float64)[rows], 1.0))
    spread = depth.std()
    z = (depth - depth.mean()) / spread if spread > 0 else depth - depth.mean()
    return np.repeat(z[:, None], fold_input.n_vars, axis=1).astype(np.float32)


def baseline_predictions(
    fold_input: ad.AnnData, patches: np.ndarray, *, fold: int
) -> tuple[ad.AnnData, ad.AnnData, ad.AnnData]:
    """The training-mean and ridge-on-image-features baselines and the read-depth
    reference for one fold.

    Both are fitted on the fold's training spots (``training_rows``: role train, patch
    over tissue) and predict every held-out spot with a patch (``held_out_rows``).

    Args:
        fold_input: The fold's model input (X z-scored targets [n_spots, n_genes], obs
            ``role`` / ``patch_row``; see ``predictions_anndata`` for the rest).
        patches: [N_store, H, W, 3] uint8 patch store (rows named by obs ``patch_row``).
        fold: Outer fold (recorded in the predictions' ``uns``).

    Returns:
        ``baseline_mean``, ``baseline_ridge`` and ``reference_read_depth`` predictions
        AnnData (see :func:`~brstnet.evaluation.predictions.predictions_anndata`), each
        [n_test, n_genes] over the fold's held-out spots.
    """
    train, test = training_rows(fold_input), held_out_rows(fold_input)
    rows = fold_input.obs["patch_row"].to_numpy()
    targets = np.asarray(fold_input.X)
    mean = training_mean(targets[train], len(test))
    needed = np.unique(rows[np.r_[train, test]])  # sorted store rows, each featurised once
    features = image_features(patches[needed])
    train_x = features[np.searchsorted(needed, rows[train])]
    test_x = features[np.searchsorted(needed, rows[test])]
    predicted = ridge(train_x, targets[train], test_x)
    # the read depth as a depth head would predict it: the training mean, and a ridge on
    # the same features (fitted apart, so the genes' penalty is the one chosen for them).
    # The reference has none: its every gene is the depth itself.
    mean_depth, ridge_depth = None, None
    if "log_depth" in fold_input.obs:
        depth = fold_input.obs["log_depth"].to_numpy(np.float64)
        mean_depth = np.full(len(test), depth[train].mean())
        ridge_depth = ridge(train_x, depth[train], test_x).reshape(-1).astype(np.float64)
    return (
        predictions_anndata(
            fold_input,
            test,
            mean,
            variant="baseline_mean",
            fold=fold,
            predicted_log_depth=mean_depth,
        ),
        predictions_anndata(
            fold_input,
            test,
            predicted,
            variant="baseline_ridge",
            fold=fold,
            predicted_log_depth=ridge_depth,
        ),
        predictions_anndata(
            fold_input, test, read_depth(fold_input, test), variant=READ_DEPTH, fold=fold
        ),
    )
