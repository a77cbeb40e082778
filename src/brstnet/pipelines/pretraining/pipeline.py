"""pretraining wiring: the tissue windows are cut once, then one encoder per outer fold.

Fold k pretrains on the windows of its training patients' sections (and of its held-out
patients' with ``pretraining.include_target_slides``); its trunk is
``pretrained_<tag>_fold<k>`` (``<tag>``: the backbone, ``_tgt`` appended with the
held-out slides), read by model_training (``init: pretrained``, ``ssl_probe: true``).
"""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from brstnet.config import PretrainingParams

from ..variants import current_parameters
from ..variants import n_folds as fold_count
from . import nodes

__all__ = ["configured_tag", "create_pipeline", "trunk_dataset"]


def trunk_dataset(tag: str, fold: int) -> str:
    """The catalog name of fold ``fold``'s pretrained trunk."""
    return f"pretrained_{tag}_fold{fold}"


def configured_tag(params: dict) -> str:
    """The tag of the trunks ``params`` pretrain (``pretraining.backbone`` [+ ``_tgt``])."""
    return PretrainingParams.model_validate(params.get("pretraining") or {}).tag


def create_pipeline(tag: str | None = None, n_folds: int | None = None, **kwargs) -> Pipeline:
    """The window store and one pretraining per fold; without arguments both come from
    the configuration."""
    if tag is None or n_folds is None:
        params = current_parameters()
        tag = configured_tag(params)
        n_folds = fold_count(params.get("data_processing", {}), params.get("feature_selection", {}))
    nodes_ = [
        Node(
            nodes.cut_tissue_windows,
            ["sections", "stain_reference", "params:data_processing", "params:pretraining"],
            "pretraining_windows",
            name="cut_tissue_windows",
            tags=["pretraining"],
        )
    ]
    for fold in range(n_folds):
        name = f"{tag}_fold{fold}"
        nodes_.append(
            Node(
                update_wrapper(partial(nodes.pretrain_fold, fold=fold), nodes.pretrain_fold),
                ["pretraining_windows", "splits", "params:pretraining"],
                [
                    trunk_dataset(tag, fold),
                    f"pretraining_history_{name}",
                    f"pretraining_run_{name}",
                ],
                name=f"pretrain_{name}",
                tags=["pretraining", f"fold-{fold}"],
            )
        )
    return Pipeline(nodes_)
