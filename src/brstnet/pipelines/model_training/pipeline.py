"""model_training wiring: one namespace per (variant, fold) over one base pipeline.

Namespaces are ``<variant>_fold<k>``; their outputs (``<ns>.model``,
``<ns>.training_history``) are caught by dataset-factory patterns in the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from brstnet.training.params import Variant

from ..pretraining.pipeline import trunk_dataset
from ..variants import namespace, pretrained_tags, variant_grid
from . import nodes

__all__ = ["base_pipeline", "create_pipeline", "namespace"]


def base_pipeline(
    variant: str,
    backbone: str,
    aux_weight: float,
    fold: int,
    context: bool = False,
    pretrained: str | None = None,
) -> Pipeline:
    """Train one variant on one fold (inputs shared, outputs namespaced); ``pretrained``:
    the dataset of the fold's pretrained trunk it starts from."""
    train = nodes.train_fold if pretrained is None else nodes.train_fold_pretrained
    bound = partial(
        train,
        variant_name=variant,
        backbone=backbone,
        aux_weight=aux_weight,
        fold=fold,
        context=context,
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
    variants: list[Variant] | None = None,
    n_folds: int | None = None,
    pretrained: Mapping[str, str] | None = None,
    **kwargs,
) -> Pipeline:
    """All variants x folds; ``variants`` are (name, backbone, aux weight). Without
    arguments, both are read from the configuration, and so is ``pretrained``: variant
    name -> the tag of the pretrained trunks it starts from (``pretrained_<tag>_fold<k>``;
    see :func:`brstnet.pipelines.variants.pretrained_tags`)."""
    if variants is None or n_folds is None:
        variants, n_folds = variant_grid()
        pretrained = pretrained_tags() if pretrained is None else pretrained
    tags = dict(pretrained or {})
    pipes = [
        Pipeline(
            base_pipeline(
                v.name, v.backbone, v.aux_weight, f, v.context, pretrained=trunk(tags, v.name, f)
            ),
            namespace=namespace(v.name, f),
            inputs={"model_inputs", "splits", "patch_store"} | _named(trunk(tags, v.name, f)),
            parameters={"params:model_training"},
        )
        for v in variants
        if v.kind == "finetune"
        for f in range(n_folds)
    ]
    pipes += [
        Pipeline(
            ssl_probe_pipeline(v.name, v.backbone, f, _required(trunk(tags, v.name, f), v.name)),
            namespace=namespace(v.name, f),
            inputs={"model_inputs", "splits", "patch_store", trunk(tags, v.name, f)},
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


def trunk(pretrained: Mapping[str, str], variant: str, fold: int) -> str | None:
    """The catalog name of the pretrained trunk ``variant`` starts from on ``fold``."""
    if variant not in pretrained:
        return None
    return trunk_dataset(pretrained[variant], fold)


def _named(name: str | None) -> set[str]:
    return set() if name is None else {name}


def _required(name: str | None, variant: str) -> str:
    if name is None:
        raise ValueError(f"{variant} probes a pretrained encoder: give its tag in `pretrained`")
    return name


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
