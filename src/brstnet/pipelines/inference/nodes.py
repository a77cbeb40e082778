"""The inference node (the library behind it imports torch: lazy modules, loaded when
the node runs, so listing the pipelines stays fast)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from brstnet.config import InferenceParams

from ..nodes_common import lazy_module, parse

if TYPE_CHECKING:
    import brstnet.inference.models as models
    import brstnet.inference.slide as slide
else:
    models = lazy_module("brstnet.inference.models")
    slide = lazy_module("brstnet.inference.slide")

logger = logging.getLogger(__name__)


def predict_slides(params: dict[str, Any]) -> tuple[dict, dict]:
    """Predict the model's panel over every configured slide.

    Returns:
        ``slide_predictions`` (name -> AnnData) and ``slide_maps`` (name -> PNG image).
    """
    cfg = parse(InferenceParams, params)
    bundle = models.load_model(cfg.model)
    genes = (
        slide.check_genes(bundle, cfg.genes)
        if cfg.genes
        else slide.default_genes(bundle.config["genes"])
    )
    predictions, maps = {}, {}
    for name, path in cfg.slides.items():
        result = slide.predict_slide(
            bundle,
            path,
            pixel_size_um=cfg.pixel_size_um.get(name),
            pitch_um=cfg.pitch_um,
            batch_size=cfg.batch_size,
            device=cfg.device,
            tta=cfg.tta,
        )
        result.uns["model_source"] = cfg.model
        predictions[name] = result
        maps[name] = slide.slide_maps_figure(result, genes)
    return predictions, maps
