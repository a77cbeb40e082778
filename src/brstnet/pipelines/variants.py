"""Which namespaces exist: variants from parameters, fold count from the split settings.

Kedro builds pipelines before it reads parameters for a run, so the registry reads the
configuration itself (Kedro's "dynamic pipelines" pattern), in the environment named by
KEDRO_ENV (default: local over base).
"""

from __future__ import annotations

import os
from pathlib import Path


def _parameters() -> dict:
    from kedro.config import OmegaConfigLoader
    from kedro.framework.project import settings
    from kedro.utils import find_kedro_project

    from brstnet import (
        settings as project_settings,  # the project's loader arguments, configured or not
    )

    root = find_kedro_project(Path.cwd()) or Path.cwd()  # also from notebooks/
    conf = root / settings.CONF_SOURCE
    args = {**project_settings.CONFIG_LOADER_ARGS, "env": os.environ.get("KEDRO_ENV")}
    loader = OmegaConfigLoader(str(conf), **args)
    return loader["parameters"]


def n_folds(data_processing: dict, feature_selection: dict) -> int:
    """Outer folds the split settings give for the configured sections."""
    from brstnet.st.readers import ReaderOptions, patient_of

    split = feature_selection.get("split", {})
    scheme = split.get("scheme", "lopo")
    if scheme == "fixed":
        return 1
    if scheme == "kfold":
        return int(split.get("k", 5))
    from brstnet.features.identities import person_id

    dataset = data_processing.get("dataset", "her2st")
    root = (data_processing.get("source") or {}).get("local_dir")
    options = ReaderOptions(**(data_processing.get("reader") or {}))
    return len(
        {
            person_id(dataset, patient_of(dataset, root, s, options))
            for s in data_processing["sections"]
        }
    )


def variant_grid(params: dict | None = None) -> tuple[list[tuple[str, str, float]], int]:
    """([(variant name, backbone, aux weight)], number of folds) from the parameters."""
    from brstnet.config import variant_name

    params = _parameters() if params is None else params
    training = params["model_training"]
    variants = [
        (variant_name(b, float(w)), b, float(w))
        for b in training["backbones"]
        for w in training["aux_weights"]
    ]
    return variants, n_folds(params["data_processing"], params.get("feature_selection", {}))
