"""A trained model with everything that fixed its inputs and outputs.

A bundle is a folder: ``model.safetensors`` (weights) and ``config.json``, which holds
the model spec (backbone, heads, input size and normalisation: what builds the model),
the patch geometry (window in micrometres, patch size, background threshold, stain
reference: what cuts its inputs), the gene panel and target statistics (what its outputs
mean) and the training settings. Evaluation and inference build and feed the model from
these alone, so prediction cannot silently differ from training.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from ..atomic import atomic_folder
from ..models import ExpressionTask, ModelSpec
from ..models.specs import BACKBONES
from ..st.errors import DataError
from ..st.geometry import PatchGeometry

if TYPE_CHECKING:
    import anndata as ad

logger = logging.getLogger(__name__)


@dataclass
class ModelBundle:
    """Weights plus configuration (JSON-ready dict, see :func:`bundle_config`).

    Attributes:
        checkpoints: The training checkpoints this bundle replaces; :func:`save_bundle`
            removes them once the bundle is written (not saved in the bundle).
    """

    config: dict
    state_dict: dict[str, torch.Tensor]
    checkpoints: Path | None = field(default=None, compare=False, repr=False)

    @property
    def spec(self) -> ModelSpec:
        """What builds the model."""
        return ModelSpec.from_dict(self.config["model"])

    @property
    def geometry(self) -> PatchGeometry:
        """What cuts the model's input patches."""
        return PatchGeometry.from_dict(self.config["geometry"])

    def build_task(self) -> ExpressionTask:
        """Rebuild the task with these weights (on CPU)."""
        task = self.spec.build(seed=0)  # seeded locally: the weights are replaced anyway
        task.load_state_dict(self.state_dict)
        return task


def bundle_config(
    *,
    variant: str,
    fold: int,
    spec: ModelSpec,
    geometry: PatchGeometry,
    fold_input: ad.AnnData,
    aux_genes: list[str],
    train_patients: list[str],
    test_patients: list[str],
    training: dict[str, Any],
) -> dict[str, Any]:
    """The bundle's ``config.json``: model spec, geometry, panel, targets, training."""
    stats = fold_input.var
    return {
        "brstnet_version": __version__,
        "variant": variant,
        "fold": int(fold),
        "model": spec.to_dict(),
        "geometry": geometry.to_dict(),
        "genes": [str(g) for g in fold_input.var_names],
        "aux_genes": list(aux_genes),
        "target": {
            "transform": str(fold_input.uns["transform"]),
            "zscore": bool(fold_input.uns["zscore"]),
            "mean": stats["target_mean"].astype(float).tolist(),
            "std": stats["target_std"].astype(float).tolist(),
            # the depth head's scale: log(total counts), z-scored with these
            "depth_mean": float(fold_input.uns.get("depth_mean", 0.0)),
            "depth_std": float(fold_input.uns.get("depth_std", 1.0)),
        },
        "train_patients": list(train_patients),
        "test_patients": list(test_patients),
        "training": training,
    }


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """Read a bundle written before model spec and geometry had their own blocks (0.x)."""
    if "model" in config and "geometry" in config:
        return config
    config = dict(config)
    aux = config.get("aux_genes", []) if config.get("aux_weight", 0) > 0 else []
    config["model"] = ModelSpec(
        config.pop("backbone"),
        len(config["genes"]),
        int(config["size_px"]),
        len(aux),
        float(config.pop("aux_weight", 0.0)),
        tuple(config.pop("pixel_mean")),
        tuple(config.pop("pixel_std")),
    ).to_dict()
    config["geometry"] = PatchGeometry(
        float(config.pop("window_um")),
        int(config.pop("size_px")),
        0.5,  # what inference assumed before the threshold travelled in the bundle
        config.pop("stain_reference", None) or {"method": None},
    ).to_dict()
    return config


def save_bundle(bundle: ModelBundle, path: str | Path) -> None:
    """Write atomically: a sibling temp folder renamed into place. Then, and only then,
    remove the training checkpoints the bundle replaces (``bundle.checkpoints``)."""
    with atomic_folder(path) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in bundle.state_dict.items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(bundle.config, indent=1))
    if bundle.checkpoints is not None and bundle.checkpoints.is_dir():
        shutil.rmtree(bundle.checkpoints, ignore_errors=True)
        logger.info("%s saved; removed its checkpoints %s", path, bundle.checkpoints)


def load_bundle(path: str | Path) -> ModelBundle:
    """Read a bundle folder and check that its two files belong together.

    Raises:
        DataError: a file missing, ``config.json`` not JSON or lacking a block,
            ``model.safetensors`` truncated or corrupt, or weights that are not those of
            the model ``config.json`` describes (each names the file and the fix).
    """
    path = Path(path)
    weights, config_file = path / "model.safetensors", path / "config.json"
    fix = "copy the model folder again (both files), or retrain it (kedro run --pipelines=model_training)"
    for file in (weights, config_file):
        if not file.is_file():
            raise DataError(f"model {path}: {file} is missing; {fix}")
    try:
        raw = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"model {path}: {config_file} is not valid JSON ({err}); {fix}") from err
    try:
        config = upgrade_config(raw)
        bundle = ModelBundle(config, {})
        spec, _ = bundle.spec, bundle.geometry
        sizes = {
            "genes": len(config["genes"]),
            "target mean": len(config["target"]["mean"]),
            "target std": len(config["target"]["std"]),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise DataError(
            f"model {path}: {config_file} lacks or garbles {err} (a model spec, geometry, "
            f"genes and target block are expected); {fix}"
        ) from err
    if spec.backbone not in BACKBONES:
        raise DataError(
            f"model {path}: {config_file} names backbone {spec.backbone!r}, which this version "
            f"of brstnet does not know ({len(BACKBONES)} known, e.g. resnet18, "
            f"efficientnet_b0); {fix}"
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise DataError(f"model {path}: {weights} is truncated or corrupt ({err}); {fix}") from err
    problem = _mismatch(spec, state, sizes)
    if problem:
        raise DataError(
            f"model {path}: {config_file} does not match model.safetensors ({problem}): the two "
            f"files come from different models; {fix}"
        )
    return ModelBundle(config, state)


def _mismatch(spec: ModelSpec, state: dict[str, torch.Tensor], sizes: dict[str, int]) -> str:
    """How the weights differ from the model ``spec`` builds ("" when they fit)."""
    wrong = {name: n for name, n in sizes.items() if n != spec.n_main}
    if wrong:
        return f"{spec.n_main} outputs in its model block, {wrong}"
    with torch.device("meta"):  # the architecture's shapes, without memory or weights
        expected = {k: tuple(v.shape) for k, v in spec.build().state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(expected.keys() - got), sorted(got.keys() - expected)
    if missing or unexpected:
        return (
            f"{spec.backbone} needs {len(missing)} weights the file lacks (e.g. {missing[:2]}) "
            f"and the file holds {len(unexpected)} it does not (e.g. {unexpected[:2]})"
        )
    shapes = [k for k in expected if expected[k] != got[k]]
    if shapes:
        first = shapes[0]
        return (
            f"{first}: {list(got[first])} in the weights, {list(expected[first])} from config.json"
        )
    return ""
