"""feature_selection: patient splits, per-fold gene panels, targets and statistics."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
