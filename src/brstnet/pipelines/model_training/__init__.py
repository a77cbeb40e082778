"""model_training: one namespace per variant (backbone x auxiliary) and fold."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
