"""Tiny synthetic model inputs and predictions for the evaluation library's tests.

No Kedro, no MLflow, no real data: a fold is an AnnData shaped like a
``model_inputs`` partition, its patch store a small uint8 array.
"""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

PATCH_PX = 8


def make_fold(
    genes: Sequence[str] = ("G1", "G2", "G3"),
    *,
    train_patient: str = "A",
    test_patient: str = "B",
    n_train: int = 8,
    n_test: int = 5,
    seed: int = 0,
) -> tuple[ad.AnnData, np.ndarray]:
    """One fold's model input and its patch store.

    Training spots (section ``<train_patient>1``): all with a patch, the last one off
    the tissue. Held-out spots (section ``<test_patient>1``): the last one without a
    patch (``patch_row`` -1). Each spot's patch is a uniform colour of brightness
    ``v`` (a store row, the rows shuffled), and gene ``G1``'s counts grow with ``v``.
    The targets are log1p counts z-scored with the training spots' statistics.

    Returns:
        The fold input (X [n_spots, n_genes] float32, var ``target_mean`` /
        ``target_std``, layers ``counts``, obsm ``spatial`` / ``aux``, obs ``log_depth`` /
        ``depth_target``, uns ``transform``, ``depth_mean`` / ``depth_std``)
        and the store [n_store, 8, 8, 3] uint8 (two rows more than spots, unused).
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    store_rows = rng.permutation(n + 2)
    brightness = np.linspace(40, 220, n + 2)[store_rows]  # per spot, through its store row
    patches = np.zeros((n + 2, PATCH_PX, PATCH_PX, 3), np.uint8)
    patches[store_rows] = brightness[:, None, None, None].astype(np.uint8)
    patch_row = store_rows[:n].copy()
    patch_row[-1] = -1
    counts = rng.poisson(20.0, (n, len(genes))).astype(np.float32)
    counts[:, 0] = np.round(brightness[:n] / 4)
    role = np.array(["train"] * n_train + ["test"] * n_test)
    obs = pd.DataFrame(
        {
            "section": [f"{train_patient}1"] * n_train + [f"{test_patient}1"] * n_test,
            "patient": [train_patient] * n_train + [test_patient] * n_test,
            "role": role,
            "passes_tissue": [True] * (n_train - 1) + [False] + [True] * n_test,
            "patch_row": patch_row,
            # reads over all genes, as model_inputs carry them: the panel's and more
            "total_counts": counts.sum(axis=1).astype(np.int64) + rng.integers(500, 1500, n),
        },
        index=[f"s{i}" for i in range(n)],
    )
    values = np.log1p(counts)
    mean, std = values[role == "train"].mean(axis=0), values[role == "train"].std(axis=0)
    fold_input = ad.AnnData(
        X=((values - mean) / std).astype(np.float32),
        obs=obs,
        var=pd.DataFrame({"target_mean": mean, "target_std": std}, index=list(genes)),
    )
    fold_input.layers["counts"] = counts
    fold_input.obsm["spatial"] = np.c_[np.arange(n) * 10.0 + 50, np.full(n, 60.0)]
    fold_input.obsm["aux"] = np.zeros((n, 1), np.float32)
    fold_input.uns["transform"] = "log1p"
    # the depth head's target, as build_fold_input writes it: training statistics
    depth = np.log(obs["total_counts"].to_numpy(np.float64))
    depth_mean, depth_std = depth[role == "train"].mean(), depth[role == "train"].std()
    fold_input.obs["log_depth"] = depth
    fold_input.obs["depth_target"] = ((depth - depth_mean) / depth_std).astype(np.float32)
    fold_input.uns.update(depth_mean=float(depth_mean), depth_std=float(depth_std))
    return fold_input, patches


def predictions(
    observed: np.ndarray,
    predicted: np.ndarray,
    genes: Sequence[str],
    patients: Sequence[str],
    *,
    variant: str = "v",
    sections: Sequence[str] | None = None,
) -> ad.AnnData:
    """A hand-made predictions AnnData: X ``predicted``, layer ``observed`` [n, n_genes]."""
    obs = pd.DataFrame(
        {"patient": list(patients), "section": list(sections or [f"{p}1" for p in patients])},
        index=[f"{p}_{i}" for i, p in enumerate(patients)],
    )
    out = ad.AnnData(
        X=np.asarray(predicted, np.float32), obs=obs, var=pd.DataFrame(index=list(genes))
    )
    out.layers["observed"] = np.asarray(observed, np.float32)
    out.obsm["spatial"] = np.c_[np.arange(len(obs)) * 10.0 + 50, np.full(len(obs), 60.0)]
    out.uns["variant"] = variant
    return out
