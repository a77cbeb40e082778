"""A trained model with everything that fixed its inputs and outputs.

A bundle is a folder: ``model.safetensors`` (weights) and ``config.json`` (backbone,
heads, gene panel, target statistics, stain reference, patch geometry, training
settings), so that prediction cannot silently mismatch training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_folder
from ..models import ExpressionModel, ExpressionTask


@dataclass
class ModelBundle:
    """Weights plus configuration (JSON-ready dict)."""

    config: dict
    state_dict: dict[str, torch.Tensor]

    def build_task(self) -> ExpressionTask:
        """Rebuild the task with these weights (on CPU)."""
        cfg = self.config
        model = ExpressionModel(
            cfg["backbone"],
            n_main=len(cfg["genes"]),
            n_aux=len(cfg["aux_genes"]) if cfg["aux_weight"] > 0 else 0,
            img_size=cfg["size_px"],
        )
        task = ExpressionTask(model, aux_weight=cfg["aux_weight"])
        task.load_state_dict(self.state_dict)
        return task


def save_bundle(bundle: ModelBundle, path: str | Path) -> None:
    """Write atomically: a sibling temp folder renamed into place."""
    with atomic_folder(path) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in bundle.state_dict.items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(bundle.config, indent=1))


def load_bundle(path: str | Path) -> ModelBundle:
    path = Path(path)
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"no model at {path} (model.safetensors missing); train it first")
    return ModelBundle(
        json.loads((path / "config.json").read_text()), load_file(str(path / "model.safetensors"))
    )
