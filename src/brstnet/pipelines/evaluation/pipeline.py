"""evaluation wiring: predictions per (variant, fold), then per-variant metrics, plots
and an MLflow run, for every model variant, the two baselines and the read-depth
reference."""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from ..model_training.pipeline import namespace
from ..variants import variant_grid
from . import nodes

BASELINES = ("baseline_mean", "baseline_ridge")
#: Not a model: each gene's r with the test spot's own log total count (it reads the
#: test counts), the part of r any depth-tracking prediction gets.
REFERENCES = ("reference_read_depth",)


def _bind(func, **kwargs):
    return update_wrapper(partial(func, **kwargs), func)


def create_pipeline(
    variants: list[tuple[str, str, float]] | None = None, n_folds: int | None = None, **kwargs
) -> Pipeline:
    if variants is None or n_folds is None:
        variants, n_folds = variant_grid()
    folds = range(n_folds)
    shared = {"model_inputs", "patch_store", "sections"}
    pipes = []
    for name, *_ in variants:
        for f in folds:
            ns = namespace(name, f)
            pipes.append(
                Pipeline(
                    [
                        Node(
                            nodes.predict_held_out,
                            ["model", "model_inputs", "patch_store", "params:evaluation"],
                            "predictions",
                            name="predict_held_out",
                        )
                    ],
                    namespace=ns,
                    inputs={"model_inputs", "patch_store"},
                    parameters={"params:evaluation"},
                )
            )
    for f in folds:
        pipes.append(
            Pipeline(
                [
                    Node(
                        _bind(nodes.cut_degraded_patches, fold=f),
                        ["model_inputs", "sections", "patch_store", "params:evaluation"],
                        f"robustness_patches_fold{f}",
                        name=f"cut_degraded_patches_fold{f}",
                    ),
                    Node(
                        _bind(nodes.predict_baselines, fold=f),
                        ["model_inputs", "patch_store"],
                        [f"{namespace(b, f)}.predictions" for b in BASELINES + REFERENCES],
                        name=f"predict_baselines_fold{f}",
                    ),
                ]
            )
        )
    labels = (
        [(name, "model") for name, *_ in variants]
        + [(b, "baseline") for b in BASELINES]
        + [(r, "reference") for r in REFERENCES]
    )
    for label, kind in labels:
        preds = [f"{namespace(label, f)}.predictions" for f in folds]
        items = (
            [
                x
                for f in folds
                for x in (f"{namespace(label, f)}.training_history", f"{namespace(label, f)}.model")
            ]
            if kind == "model"
            else []
        )
        robustness = (
            [
                Node(
                    nodes.evaluate_robustness,
                    [
                        "params:evaluation",
                        "model_inputs",
                        *[f"{namespace(label, f)}.model" for f in folds],
                        *[f"robustness_patches_fold{f}" for f in folds],
                    ],
                    ["robustness", "robustness_plot"],
                    name="evaluate_robustness",
                )
            ]
            if kind == "model"
            else []
        )
        track = (
            Node(
                _bind(nodes.track_model, variant=label),
                [
                    "per_gene",
                    "metrics",
                    "r_histogram",
                    "gene_maps",
                    "params:feature_selection",
                    "robustness",
                    *items,
                ],
                "mlflow_run",
                name="track_variant",
            )
            if kind == "model"
            else Node(
                _bind(nodes.track_variant, variant=label, kind=kind),
                ["per_gene", "metrics", "r_histogram", "gene_maps", "params:feature_selection"],
                "mlflow_run",
                name="track_variant",
            )
        )
        body = Pipeline(
            [
                *robustness,
                Node(
                    nodes.evaluate_variant,
                    ["params:evaluation", *preds],
                    ["per_gene", "metrics"],
                    name="evaluate_variant",
                ),
                Node(
                    nodes.plot_variant,
                    ["per_gene", "sections", "params:evaluation", *preds],
                    ["r_histogram", "gene_maps"],
                    name="plot_variant",
                ),
                track,
            ]
        )
        degraded = {f"robustness_patches_fold{f}" for f in folds} & body.inputs()
        pipes.append(
            Pipeline(
                body,
                namespace=label,
                inputs=shared.intersection(body.inputs()) | set(preds) | set(items) | degraded,
                parameters={"params:evaluation", "params:feature_selection"},
            )
        )
    models = [label for label, kind in labels if kind == "model"]
    pipes.append(
        Pipeline(
            [
                Node(
                    nodes.summarise_robustness,
                    {label: f"{label}.robustness" for label in models},
                    ["robustness_summary", "robustness_summary_plot"],
                    name="summarise_robustness",
                ),
                Node(
                    nodes.summarise_variants,
                    [f"{label}.metrics" for label, _ in labels],
                    ["evaluation_summary", "evaluation_summary_plot"],
                    name="summarise_variants",
                ),
                Node(
                    nodes.headline_run,
                    [
                        "evaluation_summary",
                        "params:data_processing",
                        "params:feature_selection",
                        "params:model_training",
                    ],
                    "best_variant_run",
                    name="log_best_variant",
                ),
            ]
        )
    )
    return sum(pipes, Pipeline([]))
