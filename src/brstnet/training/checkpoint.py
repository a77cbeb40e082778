"""Exactly resumable loops: the checkpoint of everything the next epoch draws from.

The training loop (:mod:`brstnet.training.loop`) and the pretraining loop
(:mod:`brstnet.pretraining.train`) write one after every epoch, atomically, under a
signature of what defines the run; a checkpoint with another signature is not resumed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_file
from .data import PatchBatches

__all__ = ["LoopState", "batches_digest"]

logger = logging.getLogger(__name__)


@dataclass
class LoopState:
    """The module, its optimiser, schedule and loss scaler, and the loop's two random
    streams (shuffling, augmentation): with the global torch random state, all an epoch
    draws from.

    Attributes:
        module_key: The module's key in the checkpoint (``task`` for the training loop,
            ``model`` for pretraining).
    """

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    sampler_generator: torch.Generator
    augment_generator: torch.Generator
    module_key: str = "task"

    def resume(
        self, checkpoint: Path | None, signature: dict, *, desc: str, other: str
    ) -> dict | None:
        """Restore the state from ``checkpoint`` if it was written under ``signature``.

        Args:
            desc: Labels the log line.
            other: Completes "was written ..." in the warning for another signature
                (e.g. "with other settings").

        Returns:
            The checkpoint (``epoch``, ``history`` and what the loop saved with it), or
            None when there is none or it was written by another run (a warning names
            the signature keys that differ).
        """
        if checkpoint is None or not checkpoint.is_file():
            return None
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state.get("signature") != signature:
            saved = state.get("signature") or {}
            logger.warning(
                "%s: checkpoint %s was written %s; starting afresh (differs in: %s)",
                desc,
                checkpoint,
                other,
                ", ".join(k for k in signature if saved.get(k) != signature[k]),
            )
            return None
        self.module.load_state_dict(state[self.module_key])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.sampler_generator.set_state(state["sampler_generator"])
        self.augment_generator.set_state(state["augment_generator"])
        torch.set_rng_state(state["torch_rng"])
        logger.info("%s: resuming from %s after epoch %d", desc, checkpoint, int(state["epoch"]))
        return state

    def save(self, checkpoint: Path, signature: dict, epoch: int, **extra: Any) -> None:
        """Write the state after ``epoch`` atomically, with ``extra`` (history, ...)."""
        state = {
            "signature": signature,
            "epoch": epoch,
            self.module_key: self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "augment_generator": self.augment_generator.get_state(),
            "sampler_generator": self.sampler_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            **extra,
        }
        with atomic_file(checkpoint) as tmp:
            torch.save(state, tmp)


def batches_digest(*parts: PatchBatches | None) -> str:
    """A hash of the rows, (auxiliary, depth) targets and spot neighbours of ``parts`` (not
    of the patch pixels)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        arrays = (
            (None,) * 6
            if part is None
            else (
                part.rows,
                part.targets,
                part.aux,
                part.depth_targets,
                part.neighbours,
                part.groups,
            )
        )
        for array in arrays:
            array = np.zeros(0) if array is None else np.ascontiguousarray(array)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()
