"""A model bundle as an MLflow pyfunc model: ``mlflow.pyfunc.load_model(uri).predict(patches)``.

Each fold's bundle is logged as an MLflow logged model (:func:`log_bundle_model`), so the
run's "Models", the model registry and ``mlflow.pyfunc`` work with it. The bundle itself
(``model.safetensors`` + ``config.json``) travels unchanged as the model's ``bundle``
artifact: ``brstnet predict --model models:/<name>/<version>`` reads it from there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import Model, infer_signature
from mlflow.pyfunc import PythonModel

from .. import __version__
from ..training.bundle import ModelBundle, load_bundle
from ..training.context import predict_from_embeddings, uses_context
from ..training.devices import resolve_device
from ..training.loop import predict_images

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

#: The artifact name of the bundle folder inside a logged model.
BUNDLE_ARTIFACT = "bundle"


class BundleModel(PythonModel):
    """Predict expression from a batch of patches cut as the bundle's geometry says.

    Input: [N, size_px, size_px, 3] uint8 RGB patches (a window of ``window_um``
    micrometres resized to ``size_px``, stain-normalised with the bundle's reference, as
    ``brstnet predict`` and the patch store cut them). Output: a DataFrame with one column
    per panel gene, in the training target scale (log(1 + count) for the default
    ``log1p`` targets; the z-score with the training statistics undone).
    """

    def load_context(self, context: Any) -> None:
        self.bundle = load_bundle(context.artifacts[BUNDLE_ARTIFACT])
        self.task = None

    # no type hints: MLflow reads them as an input schema; the signature is logged instead
    def predict(self, context, model_input, params=None):  # noqa: D102
        return predict_patches(self.bundle, model_input, task=self._task())

    def _task(self):
        if self.task is None:
            self.task = self.bundle.build_task()
        return self.task


def predict_patches(bundle: ModelBundle, patches: Any, *, task=None) -> pd.DataFrame:
    """The bundle's predictions for ``patches`` ([N, H, W, 3] uint8) on CPU, one column per
    gene in the training target scale (see :class:`BundleModel`)."""
    images = np.asarray(patches)
    size = bundle.geometry.size_px
    if images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ValueError(
            f"expected patches of shape [N, {size}, {size}, 3] (uint8 RGB, the model's "
            f"{bundle.geometry.window_um:g} um window at {size} px), got {list(images.shape)}"
        )
    task = bundle.build_task() if task is None else task
    setup = resolve_device("cpu")
    if uses_context(task):
        # patches come without positions: no neighbours, the batch is the section
        logger.warning(
            "model %s reads its spots' neighbours; patches given without positions are "
            "predicted without them (the batch taken as one section). For whole slides "
            "use brstnet predict, which finds the neighbours on its grid",
            bundle.config.get("variant"),
        )
        embeddings = predict_images(task, [images.astype(np.uint8)], setup, features=True)
        n = len(embeddings)
        z, _ = predict_from_embeddings(
            task, embeddings, np.full((n, 8), -1), np.zeros(n, dtype=np.int64), setup
        )
        z = z.astype(np.float64)
    else:
        z = predict_images(task, [images.astype(np.uint8)], setup).astype(np.float64)
    target = bundle.config["target"]
    values = z * np.asarray(target["std"]) + np.asarray(target["mean"]) if target["zscore"] else z
    return pd.DataFrame(values.astype(np.float32), columns=list(bundle.config["genes"]))


def input_example(bundle: ModelBundle, n: int = 2) -> np.ndarray:
    """A small batch of mid-grey patches of the bundle's input shape."""
    size = bundle.geometry.size_px
    return np.full((n, size, size, 3), 200, dtype=np.uint8)


def bundle_metadata(config: dict[str, Any]) -> dict[str, Any]:
    """The bundle configuration a logged model carries as metadata (panel and statistics
    left out: they are in the bundle's config.json artifact)."""
    return {
        "brstnet_version": config.get("brstnet_version"),
        "variant": config["variant"],
        "fold": config["fold"],
        "model": config["model"],
        "geometry": config["geometry"],
        "target_transform": config["target"]["transform"],
        "n_genes": len(config["genes"]),
        "train_patients": config["train_patients"],
        "test_patients": config["test_patients"],
    }


def log_bundle_model(
    bundle_dir: str | Path, bundle: ModelBundle, *, name: str, run_id: str
) -> ModelInfo:
    """Log a saved bundle folder as an MLflow logged model of run ``run_id``.

    Args:
        bundle_dir: The bundle folder (``model.safetensors`` + ``config.json``).
        bundle: The same bundle, loaded (for the input example and metadata).
        name: The logged model's name (``fold<k>``).
        run_id: The run that produced it.
    """
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    # created here, in the run's experiment (Model.log alone files it under the active one)
    logged = client.create_logged_model(
        run.info.experiment_id,
        name=name,
        source_run_id=run_id,
        params={"variant": str(bundle.config["variant"]), "fold": str(bundle.config["fold"])},
        model_type="brstnet bundle",
    )
    example = input_example(bundle)
    return Model.log(
        artifact_path=None,
        name=name,
        flavor=mlflow.pyfunc,
        run_id=run_id,
        model_id=logged.model_id,
        python_model=BundleModel(),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        input_example=example,
        signature=infer_signature(example, predict_patches(bundle, example)),
        metadata=bundle_metadata(bundle.config),
        # listed, not inferred: inferring runs the model in a subprocess
        pip_requirements=[
            f"brstnet=={__version__}",
            f"torch=={torch.__version__.split('+')[0]}",
            f"mlflow=={mlflow.__version__}",
        ],
    )
