"""evaluation: held-out predictions, per-gene metrics, baselines, plots and MLflow runs."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
