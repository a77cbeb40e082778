"""Backbone trunks built with timm from the registry (:mod:`brstnet.models.specs`), and
initial weights from local files."""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from torch import nn

from .layers import ClassAndMeanTokens, timm_kwargs
from .specs import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, backbone_spec

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BackboneSpec",
    "backbone_spec",
    "create_backbone",
    "load_initial_weights",
]

logger = logging.getLogger(__name__)


def create_backbone(name: str, *, img_size: int, pretrained: bool = False) -> tuple[nn.Module, int]:
    """Build a backbone trunk (no classifier; global pooling kept).

    Args:
        name: A key of :data:`BACKBONES`.
        img_size: Input side in pixels.
        pretrained: Use timm's pretrained weights (downloads; off by default, as
            BrST-Net trains from scratch). For offline initial weights use
            :func:`load_initial_weights`.

    Returns:
        The trunk, mapping [B, 3, H, W] to [B, F], and F (its feature width).

    Raises:
        ValueError: unknown name, listing the valid ones.
    """
    spec = backbone_spec(name)
    kwargs = timm_kwargs(spec.kwargs)
    if spec.takes_img_size:
        kwargs["img_size"] = img_size
    trunk = timm.create_model(spec.timm_name, pretrained=pretrained, num_classes=0, **kwargs)
    if spec.pooling == "class_mean":
        trunk = ClassAndMeanTokens(trunk)
    return trunk, int(trunk.num_features)


def load_initial_weights(module: nn.Module, path: str | Path) -> None:
    """Load initial weights from a local file, never a download.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``. A classifier in the file (absent from the trunk)
    is ignored; missing trunk weights are an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"initial weights {path} not found; give a local .safetensors or .pt file"
        )
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(
            f"{path} lacks {len(result.missing_keys)} weights of the backbone, e.g. {result.missing_keys[:3]}"
        )
    if result.unexpected_keys:
        logger.info(
            "initial weights %s: ignored %d keys not in the trunk (e.g. a classifier)",
            path,
            len(result.unexpected_keys),
        )
