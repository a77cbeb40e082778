"""Find a trained model: a local bundle folder or an MLflow artifact URI."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..st.errors import DataError
from ..training.bundle import ModelBundle, load_bundle


def load_model(spec: str | Path, *, tracking_uri: str | None = None) -> ModelBundle:
    """Load ``spec``: a folder with model.safetensors + config.json (``data/06_models/<ns>``),
    or an MLflow URI such as ``runs:/<run id>/model/fold0`` (what each variant's run logs)."""
    spec = str(spec)
    if "://" in spec or spec.startswith("runs:/") or spec.startswith("models:/"):
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            try:  # the store is passed, never set process-wide
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=spec, dst_path=tmp, tracking_uri=tracking_uri
                )
            except Exception as err:  # mlflow raises several types for a bad URI
                raise DataError(f"model {spec}: cannot fetch it from MLflow ({err})") from err
            return load_bundle(local)
    path = Path(spec)
    if not (path / "model.safetensors").is_file():
        raise DataError(
            f"model {spec}: no model.safetensors there; give a folder under data/06_models or runs:/<run id>/model/fold<k>"
        )
    return load_bundle(path)
