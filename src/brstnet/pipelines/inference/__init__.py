"""inference: gene-expression maps for H&E slides that have no ST data."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
