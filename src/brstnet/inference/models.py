"""Find a trained model: a local bundle folder or an MLflow artifact URI."""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from pathlib import Path

import mlflow
from mlflow.models import Model
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from ..st.errors import DataError
from ..training.bundle import ModelBundle, load_bundle
from .pyfunc import BUNDLE_ARTIFACT


def _store(tracking_uri: str | None):
    """The tracking store (and with it the model registry) ``tracking_uri`` for a while;
    the process's own one again afterwards."""
    if tracking_uri is None:
        return nullcontext()
    return _use_tracking_uri(tracking_uri)


def _bundle_in_model(folder: Path, spec: str) -> Path:
    """The bundle folder inside a downloaded MLflow model (its ``bundle`` artifact)."""
    flavor = Model.load(str(folder / "MLmodel")).flavors.get("python_function", {})
    artifact = flavor.get("artifacts", {}).get(BUNDLE_ARTIFACT)
    if artifact is None:
        raise DataError(
            f"model {spec}: an MLflow model without a brstnet bundle; give a model that a "
            "brstnet run logged (models:/<variant>_fold<k> ...) or a bundle folder"
        )
    return folder / artifact["path"]


def load_model(spec: str | Path, *, tracking_uri: str | None = None) -> ModelBundle:
    """Load ``spec``: a folder with model.safetensors + config.json (``data/06_models/<ns>``),
    or an MLflow URI: ``runs:/<run id>/model/fold0`` (the bundle's files in a variant's
    run), or a logged or registered model, ``models:/<model id>`` or
    ``models:/<name>/<version>`` (the bundle is its ``bundle`` artifact)."""
    spec = str(spec)
    if "://" in spec or spec.startswith("runs:/") or spec.startswith("models:/"):
        with tempfile.TemporaryDirectory() as tmp:
            try:  # the store is passed, never set process-wide
                with _store(tracking_uri):  # models:/ names resolve in its registry too
                    local = mlflow.artifacts.download_artifacts(
                        artifact_uri=spec, dst_path=tmp, tracking_uri=tracking_uri
                    )
            except Exception as err:  # mlflow raises several types for a bad URI
                raise DataError(f"model {spec}: cannot fetch it from MLflow ({err})") from err
            if (Path(local) / "MLmodel").is_file():  # an MLflow model: the bundle inside
                local = _bundle_in_model(Path(local), spec)
            return load_bundle(local)
    path = Path(spec)
    if not (path / "model.safetensors").is_file():
        raise DataError(
            f"model {spec}: no model.safetensors there; give a folder under data/06_models, runs:/<run id>/model/fold<k> or models:/<name>/<version>"
        )
    return load_bundle(path)
