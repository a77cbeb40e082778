"""Backbones (timm) and the expression model with its auxiliary head (plain PyTorch)."""

from .backbones import BACKBONES, backbone_spec, create_backbone, load_initial_weights
from .spec import ModelSpec
from .task import ExpressionModel, ExpressionTask

__all__ = [
    "BACKBONES",
    "ExpressionModel",
    "ExpressionTask",
    "ModelSpec",
    "backbone_spec",
    "create_backbone",
    "load_initial_weights",
]
