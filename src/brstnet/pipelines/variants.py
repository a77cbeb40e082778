"""Which namespaces a run has: variants from the parameters, folds from the split settings.

Kedro registers pipelines before any node runs, so the registry reads the configuration
itself (Kedro's "dynamic pipelines" pattern). It reads the configuration of the session
being run, the one its nodes receive: :class:`brstnet.hooks.ProjectHooks` hands it over
when a session's context is created (``--env`` and ``--params`` included) and takes it
back when that session's run ends. Otherwise (``import`` in a notebook, ``kedro registry
list``) it reads the environment named by KEDRO_ENV (default: local over base). It never
reads data files, so a run whose first node downloads the data registers before the
data exist.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

_run_parameters: dict[str, Any] | None = None  # the session's parameters (set by the hooks)
_registered_for: str | None = None  # the parameters Kedro's registered pipelines come from


class Variant(NamedTuple):
    """One model variant: a backbone with an auxiliary weight (0 = no auxiliary head),
    trained (``finetune``) or a frozen encoder with a ridge probe (``probe``), and
    whether it reads the spots' spatial context."""

    name: str
    backbone: str
    aux_weight: float
    kind: str = "finetune"
    context: bool = False


class Grid(NamedTuple):
    """Every training namespace of a run: variants x outer folds."""

    variants: tuple[Variant, ...]
    n_folds: int

    def namespaces(self) -> set[str]:
        return {namespace(v.name, f) for v in self.variants for f in range(self.n_folds)}


def namespace(variant: str, fold: int) -> str:
    """The Kedro namespace of one variant on one fold: ``<variant>_fold<k>``."""
    return f"{variant}_fold{fold}"


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def use_run_parameters(params: dict[str, Any] | None) -> bool:
    """Register pipelines from ``params`` from now on (None: from KEDRO_ENV's
    configuration again); True when ``params`` differ from those Kedro's registered
    pipelines were built from (the caller then reloads the registry)."""
    global _run_parameters
    _run_parameters = params
    return params is not None and _registered_for is not None and _registered_for != _key(params)


def registered_grid() -> Grid:
    """The grid :func:`brstnet.pipeline_registry.register_pipelines` builds, remembering
    which parameters it came from."""
    global _registered_for
    params = _current_parameters()
    _registered_for = _key(params)
    return variant_grid(params)


def _current_parameters() -> dict[str, Any]:
    return _run_parameters if _run_parameters is not None else _configured_parameters()


def current_parameters() -> dict[str, Any]:
    """The parameters pipelines are registered from (the session's, else KEDRO_ENV's)."""
    return _current_parameters()


def run_parameters() -> dict[str, Any] | None:
    """The parameters of the session being run (None outside a session)."""
    return _run_parameters


def _configured_parameters() -> dict[str, Any]:
    from kedro.config import OmegaConfigLoader
    from kedro.framework.project import settings
    from kedro.utils import find_kedro_project

    from brstnet import settings as project_settings  # its merge strategy, bootstrapped or not

    root = find_kedro_project(Path.cwd()) or Path.cwd()  # also from notebooks/
    args = {**project_settings.CONFIG_LOADER_ARGS, "env": os.environ.get("KEDRO_ENV")}
    return OmegaConfigLoader(str(root / settings.CONF_SOURCE), **args)["parameters"]


def n_folds(data_processing: dict[str, Any], feature_selection: dict[str, Any]) -> int:
    """Outer folds the split settings give for the configured sections (no file read).

    Leave-one-patient-out has one fold per person; a section's patient comes from its
    name (her2st, He et al. 2020) or from ``data_processing.reader.patients``. Sections
    whose patient only their data tell (HEST metadata) count as their own patient here;
    ``split_patients`` stops the run if the data then give another number of folds.
    """
    from brstnet.config import DataProcessingParams, FeatureSelectionParams
    from brstnet.features.identities import person_id
    from brstnet.st.readers import ReaderOptions, patient_from_name

    split = FeatureSelectionParams.model_validate(feature_selection).split
    if split.scheme == "fixed":
        return 1
    if split.scheme == "kfold":
        return split.k
    dp = DataProcessingParams.model_validate(data_processing)
    options = ReaderOptions(**dp.reader.model_dump())
    people = {
        person_id(dp.dataset, patient_from_name(dp.dataset, s, options) or s) for s in dp.sections
    }
    return len(people)


def variant_grid(params: dict[str, Any] | None = None) -> Grid:
    """The run's variants and fold count, from ``params`` (default: the run's parameters),
    read through the same typed model as the nodes (defaults included)."""
    from brstnet.config import FeatureSelectionParams, TrainingParams, variant_name

    params = _current_parameters() if params is None else params
    training = TrainingParams.model_validate(params["model_training"])
    targets = FeatureSelectionParams.model_validate(params.get("feature_selection", {})).targets
    smoothed = targets.smoothing != "none"  # labelled in every variant's name
    variants = tuple(
        Variant(variant_name(b, float(w), c, smoothed), b, float(w), "finetune", c)
        for b in training.backbones
        for w in training.aux_weights
        for c in training.contexts
    ) + tuple(
        Variant(f"{e}_probe" + ("_smooth" if smoothed else ""), e, 0.0, "probe")
        for e in training.probes
    )
    variants = with_pretraining(variants, params)
    return Grid(
        variants,
        n_folds(params.get("data_processing", {}), params.get("feature_selection", {})),
    )


def pretraining_tag(params: dict[str, Any]) -> str | None:
    """The pretrained trunks model_training asks for (``init: pretrained`` or ``ssl_probe``):
    ``<backbone>`` or ``<backbone>_tgt`` (with the held-out patients' slides); None when
    it asks for none."""
    from brstnet.config import PretrainingParams, TrainingParams

    training = TrainingParams.model_validate(params["model_training"])
    if training.init != "pretrained" and not training.ssl_probe:
        return None
    return PretrainingParams.model_validate(params.get("pretraining") or {}).tag


def with_pretraining(variants: tuple[Variant, ...], params: dict[str, Any]) -> tuple[Variant, ...]:
    """The variants with what self-supervised pretraining adds: with ``init: pretrained``
    every fine-tuned variant starts from the pretrained trunks and is named ``<...>_ssl``
    (``<...>_ssl_tgt`` when the held-out slides were pretrained on too); ``ssl_probe``
    adds ``<backbone>_ssl_probe`` (``<backbone>_ssl_probe_tgt``)."""
    from brstnet.config import PretrainingParams, TrainingParams

    tag = pretraining_tag(params)
    if tag is None:
        return variants
    training = TrainingParams.model_validate(params["model_training"])
    pretraining = PretrainingParams.model_validate(params.get("pretraining") or {})
    suffix = "_tgt" if pretraining.include_target_slides else ""
    if training.init == "pretrained":
        variants = tuple(
            v._replace(name=f"{v.name}_ssl{suffix}") if v.kind == "finetune" else v
            for v in variants
        )
    if training.ssl_probe:
        name = f"{pretraining.backbone}_ssl_probe{suffix}"
        variants += (Variant(name, pretraining.backbone, 0.0, "ssl_probe"),)
    return variants


def pretrained_tags(params: dict[str, Any] | None = None) -> dict[str, str]:
    """Variant name -> the tag of the pretrained trunks it reads
    (``pretrained_<tag>_fold<k>``): every fine-tuned variant with ``init: pretrained``,
    and the ``ssl_probe`` variant."""
    from brstnet.config import TrainingParams

    params = _current_parameters() if params is None else params
    tag = pretraining_tag(params)
    if tag is None:
        return {}
    init = TrainingParams.model_validate(params["model_training"]).init == "pretrained"
    return {
        v.name: tag
        for v in variant_grid(params).variants
        if v.kind == "ssl_probe" or (init and v.kind == "finetune")
    }


def check_registered(
    pipeline_namespaces: set[str], params: dict[str, Any], *, complete: bool
) -> None:
    """Stop a run whose registered variant namespaces are not those its parameters give.

    Args:
        pipeline_namespaces: The ``<variant>_fold<k>`` namespaces of the run's pipeline.
        params: The run's parameters.
        complete: The run is not filtered (no ``--namespaces``, ``--nodes``, ``--tags``
            ...), so every namespace the parameters give must be there too.

    Raises:
        RuntimeError: names the namespaces in question and what to do.
    """
    expected = variant_grid(params).namespaces()
    unexpected = sorted(pipeline_namespaces - expected)
    missing = sorted(expected - pipeline_namespaces) if complete else []
    if unexpected or missing:
        raise RuntimeError(
            f"the pipeline's variant namespaces differ from this run's parameters (not in the "
            f"parameters: {unexpected[:6]}; missing: {missing[:6]}); the pipelines were "
            "registered from another configuration. Run a new session with --env / --params "
            "rather than reusing one across configurations"
        )
