"""Backbones (timm) and the expression model with its auxiliary head (plain PyTorch)."""

from .backbones import BACKBONES, create_backbone, load_initial_weights
from .task import ExpressionModel, ExpressionTask

__all__ = [
    "BACKBONES",
    "ExpressionModel",
    "ExpressionTask",
    "create_backbone",
    "load_initial_weights",
]
