"""The inference node (torch imported inside)."""

from __future__ import annotations

import logging
from typing import Any

from brstnet.config import InferenceParams

from ..nodes_common import parse

logger = logging.getLogger(__name__)


def predict_slides(params: dict[str, Any]) -> tuple[dict, dict]:
    """Predict the model's panel over every configured slide.

    Returns:
        ``slide_predictions`` (name -> AnnData) and ``slide_maps`` (name -> PNG image).
    """
    from brstnet.command import default_genes
    from brstnet.inference.models import load_model
    from brstnet.inference.slide import check_genes, predict_slide, slide_maps_figure

    cfg = parse(InferenceParams, params)
    bundle = load_model(cfg.model)
    genes = check_genes(bundle, cfg.genes) if cfg.genes else default_genes(bundle.config["genes"])
    predictions, maps = {}, {}
    for name, path in cfg.slides.items():
        result = predict_slide(
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
        maps[name] = slide_maps_figure(result, genes)
    return predictions, maps
