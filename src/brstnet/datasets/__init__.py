"""Kedro datasets for the project's own formats (kedro-datasets has no AnnData one)."""

from .anndata_dataset import AnnDataDataset
from .mlflow_run_dataset import MlflowChildRunDataset
from .model_bundle_dataset import ModelBundleDataset
from .patch_store_dataset import PatchStoreDataset

__all__ = ["AnnDataDataset", "MlflowChildRunDataset", "ModelBundleDataset", "PatchStoreDataset"]
