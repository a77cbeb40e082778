"""Nodes of the evaluation pipeline. torch is imported inside the prediction node."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from brstnet.config import EvaluationParams

from ..nodes_common import load_fold, parse, training_rows

if TYPE_CHECKING:
    import anndata as ad
    from matplotlib.figure import Figure
    from PIL.Image import Image

    from brstnet.evaluation.tracking import TrackedRun
    from brstnet.st.patches import PatchStore
    from brstnet.training.bundle import ModelBundle

logger = logging.getLogger(__name__)


def _test_positions(fold_input: ad.AnnData) -> np.ndarray:
    """Every held-out spot with a patch (the tissue check filters training, not testing)."""
    obs = fold_input.obs
    return np.flatnonzero(((obs["role"] == "test") & (obs["patch_row"] >= 0)).to_numpy())


def _predictions(
    fold_input: ad.AnnData, positions: np.ndarray, predicted: np.ndarray, label: str, fold: int
) -> ad.AnnData:
    """Predictions with the observed values beside them, in the model and target scales."""
    import anndata as ad

    from brstnet.features.targets import invert_zscore

    stats = pd.DataFrame(
        {
            "mean": fold_input.var["target_mean"].to_numpy(),
            "std": fold_input.var["target_std"].to_numpy(),
        }
    )
    observed = np.asarray(fold_input.X)[positions]
    out = ad.AnnData(
        X=predicted.astype(np.float32),
        obs=fold_input.obs.iloc[positions].copy(),
        var=fold_input.var.copy(),
    )
    out.layers["observed"] = observed.astype(np.float32)
    out.layers["predicted_target_scale"] = invert_zscore(predicted, stats)
    out.layers["observed_target_scale"] = invert_zscore(observed, stats)
    out.layers["observed_counts"] = np.asarray(fold_input.layers["counts"])[positions]
    out.obsm["spatial"] = np.asarray(fold_input.obsm["spatial"])[positions]
    out.uns.update(
        variant=label,
        fold=int(fold),
        transform=str(fold_input.uns["transform"]),
        scale="X: z-scored target scale",
    )
    return out


def predict_held_out(
    model: ModelBundle, model_inputs: dict, patch_store: PatchStore, params: dict[str, Any]
) -> ad.AnnData:
    """Predict every held-out spot of the model's fold (``<variant>_fold<k>.predictions``).

    Raises:
        ValueError: the model was trained on another gene panel than the fold's.
    """
    from brstnet.training.data import PatchBatches
    from brstnet.training.devices import resolve_device
    from brstnet.training.loop import predict

    cfg = parse(EvaluationParams, params)
    fold = int(model.config["fold"])
    fold_input = load_fold(model_inputs, fold)
    if list(model.config["genes"]) != [str(g) for g in fold_input.var_names]:
        raise ValueError(
            f"model {model.config['variant']} fold {fold} was trained on another gene panel than "
            "the current model inputs; rerun model_training after feature_selection"
        )
    setup = resolve_device(cfg.device)
    task = model.build_task().to(setup.device)
    positions = _test_positions(fold_input)
    data = PatchBatches(patch_store.patches, fold_input.obs["patch_row"].to_numpy()[positions])
    predicted = predict(task, data, setup, batch_size=cfg.batch_size, tta=cfg.tta)
    logger.info(
        "%s fold %d: predicted %d held-out spots%s",
        model.config["variant"],
        fold,
        len(positions),
        " with TTA" if cfg.tta else "",
    )
    return _predictions(fold_input, positions, predicted, model.config["variant"], fold)


def predict_baselines(
    model_inputs: dict, patch_store: PatchStore, *, fold: int
) -> tuple[ad.AnnData, ad.AnnData]:
    """The training-mean and ridge-on-image-features baselines for one fold."""
    from brstnet.evaluation import baselines

    fold_input = load_fold(model_inputs, fold)
    train, test = training_rows(fold_input), _test_positions(fold_input)
    rows = fold_input.obs["patch_row"].to_numpy()
    targets = np.asarray(fold_input.X)
    mean = baselines.training_mean(targets[train], len(test))
    needed = np.unique(rows[np.r_[train, test]])  # sorted store rows, each featurised once
    features = baselines.image_features(patch_store.patches[needed])
    train_x = features[np.searchsorted(needed, rows[train])]
    test_x = features[np.searchsorted(needed, rows[test])]
    ridge = baselines.ridge(train_x, targets[train], test_x)
    return (
        _predictions(fold_input, test, mean, "baseline_mean", fold),
        _predictions(fold_input, test, ridge, "baseline_ridge", fold),
    )


def evaluate_variant(params: dict[str, Any], *predictions: ad.AnnData) -> tuple[pd.DataFrame, dict]:
    """Per-gene table and headline metrics over all held-out patients of a variant.

    Returns:
        ``<variant>.per_gene`` (one row per panel gene) and ``<variant>.metrics``.
    """
    from brstnet.metrics import per_gene_table, summarise

    cfg = parse(EvaluationParams, params)
    # each fold has its own panel (fitted on its training patients): evaluate the union,
    # a gene counting for the held-out patients of the folds whose model predicts it
    genes = list(dict.fromkeys(str(g) for p in predictions for g in p.var_names))
    observed, predicted = [], []
    for p in predictions:
        names = [str(g) for g in p.var_names]
        predicted.append(
            pd.DataFrame(np.asarray(p.X), columns=names).reindex(columns=genes).to_numpy()
        )
        observed.append(
            pd.DataFrame(np.asarray(p.layers["observed"]), columns=names)
            .reindex(columns=genes)
            .to_numpy()
        )
    observed, predicted = np.concatenate(observed), np.concatenate(predicted)
    patients = np.concatenate([p.obs["patient"].astype(str).to_numpy() for p in predictions])
    table = per_gene_table(observed, predicted, patients, genes, alpha=cfg.alpha)
    metrics = {
        "variant": str(predictions[0].uns["variant"]),
        **summarise(table),
        "test_spots": int(len(patients)),
        "test_patients": int(len(set(patients))),
    }
    if metrics["genes_in_every_fold"] < metrics["n_genes"]:
        logger.info(
            "%s: the folds' panels share %d genes; %d genes are in some folds' panels only",
            metrics["variant"],
            metrics["genes_in_every_fold"],
            metrics["n_genes"] - metrics["genes_in_every_fold"],
        )
    logger.info(
        "%s: %d of %d genes with median r > 0, %d > 0.5, median r %.3f, aCC %.3f, %d significant, %d NaN",
        metrics["variant"],
        metrics["genes_positive"],
        metrics["n_genes"],
        metrics["genes_r_gt_0_5"],
        metrics["median_r"],
        metrics["aCC"],
        metrics["significant_genes"],
        metrics["genes_nan_r"],
    )
    return table.reset_index(), metrics


def plot_variant(
    per_gene: pd.DataFrame, sections: dict, params: dict[str, Any], *predictions: ad.AnnData
) -> tuple[Image, Image]:
    """The per-gene r histogram and gene maps on the H&E of the largest held-out section (PNG images)."""
    from brstnet.evaluation.plots import gene_maps, r_histogram, to_image
    from brstnet.st.slides import open_slide

    cfg = parse(EvaluationParams, params)
    variant = str(predictions[0].uns["variant"])
    histogram = r_histogram(per_gene.set_index("gene"), title=variant)
    spots = pd.concat([p.obs.assign(_fold=i) for i, p in enumerate(predictions)])
    section = spots["section"].value_counts().index[0]
    fold = int(spots.loc[spots["section"] == section, "_fold"].iloc[0])
    pred = predictions[fold][predictions[fold].obs["section"] == section]
    panel = set(map(str, pred.var_names))  # this fold's model predicts its own panel only
    ranked = [
        g
        for g in per_gene.dropna(subset=["median_r"]).sort_values("median_r", ascending=False)[
            "gene"
        ]
        if g in panel
    ]
    genes = ranked[: cfg.n_best_genes] + [
        g for g in cfg.map_genes if g in panel and g not in ranked[: cfg.n_best_genes]
    ]
    genes = genes or [str(pred.var_names[0])]
    adata = sections[section]() if callable(sections[section]) else sections[section]
    thumb, scale = open_slide(adata.uns["image_path"], section).thumbnail()
    r = per_gene.set_index("gene")[f"r_{pred.obs['patient'].iloc[0]}"]
    maps = gene_maps(
        thumb,
        scale,
        np.asarray(pred.obsm["spatial"]),
        np.asarray(pred[:, genes].layers["observed"]),
        np.asarray(pred[:, genes].X),
        genes,
        [float(r.get(g, np.nan)) for g in genes],
        title=f"{variant}: held-out section {section} (patient {pred.obs['patient'].iloc[0]})",
        spot_diameter_px=float(adata.uns.get("spot_diameter_um", 100.0))
        / float(adata.uns["pixel_size_um"]),
    )
    return to_image(histogram), to_image(maps)


def track_variant(
    per_gene: pd.DataFrame,
    metrics: dict,
    histogram: Image,
    maps: Image,
    feature_selection: dict[str, Any],
    *fold_items: Any,
    variant: str,
    kind: str,
) -> TrackedRun:
    """Everything one MLflow run of the variant shows (``<variant>.mlflow_run``).

    ``fold_items`` are, for a trained model, its training history and model per fold
    (history_0, model_0, history_1, model_1, ...); none for a baseline.
    """
    from brstnet.config import FeatureSelectionParams
    from brstnet.evaluation.tracking import TrackedRun

    fs = parse(FeatureSelectionParams, feature_selection)
    params: dict[str, Any] = {
        "variant": variant,
        "kind": kind,
        "split_scheme": fs.split.scheme,
        "panel_method": fs.panel.method,
        "panel_size": fs.panel.n_genes,
        "target_transform": fs.targets.transform,
        "split_seed": fs.split.seed,
    }
    numbers = {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    run = TrackedRun(
        name=variant,
        metrics=numbers,
        tables={"per_gene.csv": per_gene.set_index("gene")},
        images={"r_histogram.png": histogram, "gene_maps.png": maps},
        tags={"brstnet.kind": kind},
    )
    histories, models = fold_items[0::2], fold_items[1::2]
    for fold, (history, model) in enumerate(zip(histories, models, strict=True)):
        cfg, training = model.config, model.config["training"]
        params.update(
            backbone=cfg["backbone"],
            aux_weight=cfg["aux_weight"],
            patch_size_px=cfg["size_px"],
            window_um=cfg["window_um"],
            epochs=training["epochs"],
            final=training["final"],
            optimizer=training["optimizer"],
            lr=training["lr"],
            batch_size=training["batch_size"],
            seed=training["seed"],
            n_aux_genes=len(cfg["aux_genes"]),
        )
        params[f"fold{fold}_test_patients"] = ",".join(cfg["test_patients"])
        run.metrics[f"fold{fold}_best_epoch"] = training["best_epoch"]
        for stage, part in history.groupby("stage", sort=False):
            for column in ("loss", "loss_main", "loss_aux", "val_mean_r", "val_loss"):
                if column in part and part[column].notna().any():
                    run.histories[f"fold{fold}_{stage}_{column}"] = part.sort_values("epoch")[
                        column
                    ].tolist()
        run.models[f"fold{fold}"] = model
    if kind == "baseline":
        params["backbone"] = {
            "baseline_mean": "training mean",
            "baseline_ridge": "ridge on image features",
        }.get(variant, variant)
        params["aux_weight"] = 0.0
    run.params = params
    return run


def summarise_variants(*metrics: dict) -> tuple[pd.DataFrame, Figure]:
    """One row per variant and baseline (``evaluation_summary``) and its bar plot."""
    from brstnet.evaluation.plots import summary_plot

    summary = pd.DataFrame(list(metrics))
    columns = [
        "variant",
        "n_genes",
        "genes_in_every_fold",
        "genes_positive",
        "genes_r_gt_0_5",
        "median_r",
        "mean_r",
        "significant_genes",
        "aCC",
        "aMAE",
        "aRMSE",
        "genes_nan_r",
        "test_spots",
        "test_patients",
    ]
    summary = (
        summary[columns]
        .sort_values("aCC", ascending=False, na_position="last")
        .reset_index(drop=True)
    )
    return summary, summary_plot(summary)
