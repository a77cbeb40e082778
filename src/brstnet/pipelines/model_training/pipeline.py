"""model_training wiring: one namespace per (variant, fold) over one base pipeline.

Namespaces are ``<variant>_fold<k>``; their outputs (``<ns>.model``,
``<ns>.training_history``) are caught by dataset-factory patterns in the catalog.
"""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from ..variants import Variant, namespace
from . import nodes

__all__ = ["base_pipeline", "create_pipeline", "namespace"]


def base_pipeline(variant: str, backbone: str, aux_weight: float, fold: int) -> Pipeline:
    """Train one variant on one fold (inputs shared, outputs namespaced)."""
    bound = partial(
        nodes.train_fold, variant_name=variant, backbone=backbone, aux_weight=aux_weight, fold=fold
    )
    func = update_wrapper(bound, nodes.train_fold)
    return Pipeline(
        [
            Node(
                func,
                ["model_inputs", "splits", "patch_store", "params:model_training"],
                ["model", "training_history"],
                name="train_model",
                tags=["training", f"variant-{variant}", f"fold-{fold}"],
            )
        ]
    )


def create_pipeline(
    variants: list[Variant] | None = None, n_folds: int | None = None, **kwargs
) -> Pipeline:
    """All variants x folds; ``variants`` are (name, backbone, aux weight). Without
    arguments, both are read from the configuration."""
    if variants is None or n_folds is None:
        from brstnet.pipelines.variants import variant_grid

        variants, n_folds = variant_grid()
    pipes = [
        Pipeline(
            base_pipeline(name, backbone, weight, f),
            namespace=namespace(name, f),
            inputs={"model_inputs", "splits", "patch_store"},
            parameters={"params:model_training"},
        )
        for name, backbone, weight in variants
        for f in range(n_folds)
    ]
    return sum(pipes, Pipeline([]))
