"""Kedro datasets for the project's own formats (kedro-datasets has no AnnData one), and
an atomic wrapper for kedro-datasets' file datasets (which write in place)."""

from .anndata_dataset import AnnDataDataset
from .atomic_dataset import AtomicDataset
from .mlflow_run_dataset import MlflowChildRunDataset, MlflowParentRunDataset
from .model_bundle_dataset import ModelBundleDataset
from .patch_store_dataset import PatchStoreDataset
from .pretraining_datasets import TrunkWeightsDataset, WindowStoreDataset

__all__ = [
    "AnnDataDataset",
    "AtomicDataset",
    "MlflowChildRunDataset",
    "MlflowParentRunDataset",
    "ModelBundleDataset",
    "PatchStoreDataset",
    "TrunkWeightsDataset",
    "WindowStoreDataset",
]
