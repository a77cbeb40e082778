"""A pretrained trunk on disk: one ``.safetensors`` file of the trunk's own weights (keys as
:func:`brstnet.models.create_backbone` names them), so
:func:`brstnet.models.load_initial_weights` reads it like any initial weights, with the
run's settings in the file's metadata."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..atomic import atomic_file
from ..models.backbones import load_initial_weights

__all__ = ["PretrainedTrunk", "load_trunk", "save_trunk"]

logger = logging.getLogger(__name__)


@dataclass
class PretrainedTrunk:
    """A pretrained trunk: its weights (to save) or the file they were loaded from.

    Attributes:
        metadata: The run's settings (backbone, img_size, fold, sections, ...).
        state: The trunk's weights (what a pretraining returns); None when loaded lazily.
        path: The ``.safetensors`` file (set when loaded).
        checkpoints: The pretraining checkpoints the file replaces; :func:`save_trunk`
            removes them once the file is in place (a kill before resumes from them).
    """

    metadata: dict[str, Any]
    state: dict[str, torch.Tensor] | None = None
    path: Path | None = None
    checkpoints: Path | None = field(default=None, compare=False, repr=False)

    @property
    def backbone(self) -> str:
        return str(self.metadata["backbone"])

    def load_into(self, module: torch.nn.Module) -> None:
        """Load the weights into a trunk built by :func:`brstnet.models.create_backbone`."""
        if self.path is not None:
            load_initial_weights(module, self.path)
        elif self.state is not None:
            module.load_state_dict(self.state)
        else:
            raise ValueError("this pretrained trunk has neither a file nor weights")


def save_trunk(trunk: PretrainedTrunk, path: str | Path) -> None:
    """Write ``trunk.state`` to ``path`` atomically (metadata as JSON strings), then
    remove its checkpoints."""
    if trunk.state is None:
        raise ValueError(f"nothing to save at {path}: the pretrained trunk holds no weights")
    metadata = {k: json.dumps(v, default=str) for k, v in trunk.metadata.items()}
    state = {k: v.detach().cpu().contiguous() for k, v in trunk.state.items()}
    with atomic_file(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    if trunk.checkpoints is not None and trunk.checkpoints.is_dir():
        shutil.rmtree(trunk.checkpoints, ignore_errors=True)
        logger.info("%s saved; removed its checkpoints %s", path, trunk.checkpoints)


def load_trunk(path: str | Path) -> PretrainedTrunk:
    """The file's metadata and path (the weights are read when loaded into a trunk)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no pretrained trunk at {path}; run `kedro run --pipelines=pretraining` first"
        )
    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
    return PretrainedTrunk(metadata={k: json.loads(v) for k, v in raw.items()}, path=path)
