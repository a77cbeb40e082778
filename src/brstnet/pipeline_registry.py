"""Project pipelines."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from brstnet.pipelines import (
    data_processing,
    evaluation,
    feature_selection,
    inference,
    model_training,
)
from brstnet.pipelines.variants import registered_grid


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    ``training`` is the whole job: data to trained models to per-gene results.
    """
    dp = data_processing.create_pipeline()
    fs = feature_selection.create_pipeline()
    variants, n_folds = registered_grid()  # the run's parameters; no data file is read
    mt = model_training.create_pipeline(variants=variants, n_folds=n_folds)
    ev = evaluation.create_pipeline(variants=variants, n_folds=n_folds)
    pipelines = {
        "data_processing": dp,
        "feature_selection": fs,
        "model_training": mt,
        "evaluation": ev,
        "training": dp + fs + mt + ev,
        "inference": inference.create_pipeline(),
    }
    pipelines["__default__"] = pipelines["training"]
    return pipelines
