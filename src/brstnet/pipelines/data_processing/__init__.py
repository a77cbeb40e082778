"""data_processing: raw ST data -> one AnnData per section + a patch store."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
