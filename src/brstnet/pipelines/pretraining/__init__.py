"""pretraining: self-supervised encoders from every tissue window, one per outer fold."""

from .pipeline import configured_tag, create_pipeline

__all__ = ["configured_tag", "create_pipeline"]
