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


def base_pipeline(
    variant: str, backbone: str, aux_weight: float, fold: int, pretrained: str | None = None
) -> Pipeline:
    """Train one variant on one fold (inputs shared, outputs namespaced); ``pretrained``:
    the dataset of the fold's pretrained trunk it starts from."""
    train = nodes.train_fold if pretrained is None else nodes.train_fold_pretrained
    bound = partial(
        train, variant_name=variant, backbone=backbone, aux_weight=aux_weight, fold=fold
    )
    func = update_wrapper(bound, train)
    inputs = ["model_inputs", "splits", "patch_store", "params:model_training"]
    if pretrained is not None:
        inputs.insert(3, pretrained)
    return Pipeline(
        [
            Node(
                func,
                inputs,
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
            base_pipeline(v.name, v.backbone, v.aux_weight, f, pretrained_dataset(v, f)),
            namespace=namespace(v.name, f),
            inputs={"model_inputs", "splits", "patch_store"} | _pretrained_inputs(v, f),
            parameters={"params:model_training"},
        )
        for v in variants
        if v.kind == "finetune"
        for f in range(n_folds)
    ]
    pipes += [
        Pipeline(
            ssl_probe_pipeline(v.name, v.backbone, f, pretrained_dataset(v, f)),
            namespace=namespace(v.name, f),
            inputs={"model_inputs", "splits", "patch_store"} | _pretrained_inputs(v, f),
            parameters={"params:model_training", "params:pretraining"},
        )
        for v in variants
        if v.kind == "ssl_probe"
        for f in range(n_folds)
    ]
    encoders = sorted({v.backbone for v in variants if v.kind == "probe"})
    pipes += [
        Pipeline(
            [
                Node(
                    update_wrapper(
                        partial(nodes.extract_features, encoder=e), nodes.extract_features
                    ),
                    ["patch_store", "params:model_training"],
                    f"encoder_features_{e}",
                    name=f"extract_features_{e}",
                    tags=["training", f"encoder-{e}"],
                )
            ]
        )
        for e in encoders
    ]
    pipes += [
        Pipeline(
            probe_pipeline(v.name, v.backbone, f),
            namespace=namespace(v.name, f),
            inputs={"model_inputs", "splits", "patch_store", f"encoder_features_{v.backbone}"},
            parameters={"params:model_training"},
        )
        for v in variants
        if v.kind == "probe"
        for f in range(n_folds)
    ]
    return sum(pipes, Pipeline([]))


def probe_pipeline(variant: str, encoder: str, fold: int) -> Pipeline:
    """Fit one frozen encoder's ridge probe on one fold (features computed once, shared)."""
    bound = partial(nodes.fit_probe, variant_name=variant, encoder=encoder, fold=fold)
    return Pipeline(
        [
            Node(
                update_wrapper(bound, nodes.fit_probe),
                [
                    "model_inputs",
                    "splits",
                    "patch_store",
                    f"encoder_features_{encoder}",
                    "params:model_training",
                ],
                ["model", "training_history"],
                name="fit_probe",
                tags=["training", f"variant-{variant}", f"fold-{fold}"],
            )
        ]
    )


def pretrained_dataset(variant: Variant, fold: int) -> str | None:
    """The catalog name of the pretrained trunk ``variant`` starts from on ``fold``."""
    if variant.pretrained is None:
        return None
    from brstnet.pipelines.pretraining.pipeline import trunk_dataset

    return trunk_dataset(variant.pretrained, fold)


def _pretrained_inputs(variant: Variant, fold: int) -> set[str]:
    name = pretrained_dataset(variant, fold)
    return set() if name is None else {name}


def ssl_probe_pipeline(variant: str, backbone: str, fold: int, pretrained: str) -> Pipeline:
    """HEST-Bench's probe on fold ``fold``'s own self-supervised encoder."""
    bound = partial(nodes.fit_ssl_probe, variant_name=variant, backbone=backbone, fold=fold)
    return Pipeline(
        [
            Node(
                update_wrapper(bound, nodes.fit_ssl_probe),
                [
                    "model_inputs",
                    "splits",
                    "patch_store",
                    pretrained,
                    "params:model_training",
                    "params:pretraining",
                ],
                ["model", "training_history"],
                name="fit_probe",
                tags=["training", f"variant-{variant}", f"fold-{fold}"],
            )
        ]
    )
