"""Project pipelines."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline

from brstnet.pipelines import (
    data_processing,
    evaluation,
    feature_selection,
    inference,
    model_training,
    pretraining,
)
from brstnet.pipelines.run_parameters import registry_parameters
from brstnet.pipelines.variants import pretrained_tags, pretraining_tag, variant_grid


def register_pipelines(params: dict[str, Any] | None = None) -> dict[str, Pipeline]:
    """Register the project's pipelines.

    ``training`` is the whole job: data to trained models to per-gene results. The
    variants and folds come from the session's parameters (handed over by the project's
    hooks, :mod:`brstnet.pipelines.run_parameters`), else from KEDRO_ENV's; no data file
    is read.

    Args:
        params: Build from these parameters instead (Kedro calls this without: a check of
            a command line's pipelines for other parameters passes them).
    """
    params = registry_parameters() if params is None else params
    dp = data_processing.create_pipeline()
    fs = feature_selection.create_pipeline()
    variants, n_folds = variant_grid(params)
    mt = model_training.create_pipeline(
        variants=variants, n_folds=n_folds, pretrained=pretrained_tags(params)
    )
    ev = evaluation.create_pipeline(variants=variants, n_folds=n_folds)
    # self-supervised encoders: in `training` only when model_training asks for them
    # (init: pretrained, ssl_probe: true)
    pt = pretraining.create_pipeline(tag=pretraining.configured_tag(params), n_folds=n_folds)
    asked = pretraining_tag(params) is not None
    pipelines = {
        "data_processing": dp,
        "feature_selection": fs,
        "pretraining": pt,
        "model_training": mt,
        "evaluation": ev,
        "training": dp + fs + (pt if asked else Pipeline([])) + mt + ev,
        "inference": inference.create_pipeline(),
    }
    pipelines["__default__"] = pipelines["training"]
    return pipelines
