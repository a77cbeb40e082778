"""Backbones (timm) and the expression model with its auxiliary and depth heads.

The registry (:mod:`.specs`) and the model's shape (:mod:`.spec`) are plain data and
load without torch, so parameters and pipelines can name backbones cheaply; the torch
parts (:mod:`.backbones`, :mod:`.task`, :mod:`.encoders`) load when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from .spec import ModelSpec
from .specs import BACKBONES, BackboneSpec, backbone_spec

#: Names read from the torch modules on first use (PEP 562): importing the package
#: for the registry must not import torch.
_TORCH_NAMES = {
    "create_backbone": "backbones",
    "load_initial_weights": "backbones",
    "ExpressionModel": "task",
    "ExpressionTask": "task",
}

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "ExpressionModel",
    "ExpressionTask",
    "ModelSpec",
    "backbone_spec",
    "create_backbone",
    "load_initial_weights",
]


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(f".{_TORCH_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
