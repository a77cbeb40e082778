"""Which namespaces a run has: variants from the parameters, folds from the split settings.

The grid is read from the parameters alone (never from data files); which parameters
(the session's, else KEDRO_ENV's) is :mod:`brstnet.pipelines.run_parameters`' concern.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from brstnet.config import (
    DataProcessingParams,
    FeatureSelectionParams,
    PretrainingParams,
    TrainingParams,
    variant_name,
)
from brstnet.features.identities import person_id
from brstnet.st.readers import patient_from_name
from brstnet.training.params import Variant

from .run_parameters import current_parameters

__all__ = [
    "Grid",
    "check_registered",
    "current_parameters",
    "n_folds",
    "namespace",
    "pretrained_tags",
    "pretraining_tag",
    "variant_grid",
    "with_pretraining",
]


class Grid(NamedTuple):
    """Every training namespace of a run: variants x outer folds."""

    variants: tuple[Variant, ...]
    n_folds: int

    def namespaces(self) -> set[str]:
        return {namespace(v.name, f) for v in self.variants for f in range(self.n_folds)}


def namespace(variant: str, fold: int) -> str:
    """The Kedro namespace of one variant on one fold: ``<variant>_fold<k>``."""
    return f"{variant}_fold{fold}"


def n_folds(data_processing: dict[str, Any], feature_selection: dict[str, Any]) -> int:
    """Outer folds the split settings give for the configured sections (no file read).

    Leave-one-patient-out has one fold per person; a section's patient comes from its
    name (her2st, He et al. 2020) or from ``data_processing.reader.patients``. Sections
    whose patient only their data tell (HEST metadata) count as their own patient here;
    ``split_patients`` stops the run if the data then give another number of folds.
    """
    split = FeatureSelectionParams.model_validate(feature_selection).split
    if split.scheme == "fixed":
        return 1
    if split.scheme == "kfold":
        return split.k
    dp = DataProcessingParams.model_validate(data_processing)
    people = {
        person_id(dp.dataset, patient_from_name(dp.dataset, s, dp.reader) or s) for s in dp.sections
    }
    return len(people)


def variant_grid(params: dict[str, Any] | None = None) -> Grid:
    """The run's variants and fold count, from ``params`` (default: the run's parameters),
    read through the same typed model as the nodes (defaults included)."""
    params = current_parameters() if params is None else params
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
    training = TrainingParams.model_validate(params["model_training"])
    if training.init != "pretrained" and not training.ssl_probe:
        return None
    return PretrainingParams.model_validate(params.get("pretraining") or {}).tag


def with_pretraining(variants: tuple[Variant, ...], params: dict[str, Any]) -> tuple[Variant, ...]:
    """The variants with what self-supervised pretraining adds: with ``init: pretrained``
    every fine-tuned variant starts from the pretrained trunks and is named ``<...>_ssl``
    (``<...>_ssl_tgt`` when the held-out slides were pretrained on too); ``ssl_probe``
    adds ``<backbone>_ssl_probe`` (``<backbone>_ssl_probe_tgt``)."""
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
    params = current_parameters() if params is None else params
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
