"""Project pipelines."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from brstnet.pipelines import data_processing, feature_selection, model_training


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    ``training`` is the whole job: data to trained models to per-gene results.
    """
    dp = data_processing.create_pipeline()
    fs = feature_selection.create_pipeline()
    mt = model_training.create_pipeline()
    pipelines = {
        "data_processing": dp,
        "feature_selection": fs,
        "model_training": mt,
        "training": dp + fs + mt,
    }
    pipelines["__default__"] = pipelines["training"]
    return pipelines
