"""Spatial context in training and prediction: the spots' embeddings, their neighbours'
and their section's, for a model with a :class:`~brstnet.models.task.SpotContext`.

A context model reads each spot's neighbours through their embeddings. In training, the
spot's own embedding comes from the trunk being trained (with gradients, on the
augmented patch); its neighbours' and its section's come from a bank of all training
spots' embeddings, computed without gradients at the start of every epoch. In
prediction, a first pass embeds every spot, a second runs the context and the heads on
the embeddings: the same numbers whatever the batch order.
"""

from __future__ import annotations

import numpy as np
import torch

from .devices import DeviceSetup, autocast


class ContextBank:
    """Embeddings of a set of spots, with their neighbours and sections.

    Args:
        embeddings: [n, D] every spot's trunk embedding (on the device).
        neighbours: [n, K] positions of each spot's neighbours among the n (-1: none).
        groups: [n] each spot's section as an integer code.
    """

    def __init__(self, embeddings: torch.Tensor, neighbours: np.ndarray, groups: np.ndarray):
        device = embeddings.device
        self.embeddings = embeddings.float()
        self.neighbours = torch.as_tensor(neighbours, dtype=torch.long, device=device)
        self.groups = torch.as_tensor(groups, dtype=torch.long, device=device)
        n_groups = int(self.groups.max()) + 1 if len(self.groups) else 0
        sums = torch.zeros(n_groups, self.embeddings.shape[1], device=device)
        sums.index_add_(0, self.groups, self.embeddings)
        counts = torch.bincount(self.groups, minlength=n_groups).clamp(min=1)
        self.section_means = sums / counts[:, None]

    def context(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """The context of the spots at ``index`` [B] (positions among the n)."""
        index = index.to(self.embeddings.device)
        neighbours = self.neighbours[index]
        return {
            "neighbours": self.embeddings[neighbours.clamp(min=0)],
            "mask": neighbours >= 0,
            "section": self.section_means[self.groups[index]],
        }


def uses_context(task: torch.nn.Module) -> bool:
    """The task's model has a spatial context module."""
    model = getattr(task, "model", None)
    return getattr(model, "context", None) is not None


def require_neighbours(neighbours: np.ndarray | None, groups: np.ndarray | None, what: str):
    """A context model's data must carry its spots' neighbours and sections."""
    if neighbours is None or groups is None:
        raise ValueError(
            f"{what}: the model reads its spots' neighbours (model_training.contexts), but the "
            "data carry no spot positions to find them; give the spots' positions"
        )


@torch.no_grad()
def predict_from_embeddings(
    task: torch.nn.Module,
    embeddings: np.ndarray | torch.Tensor,
    neighbours: np.ndarray,
    groups: np.ndarray,
    setup: DeviceSetup,
    *,
    batch_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """The context and heads of a context model on every spot's embedding.

    Returns:
        Main-head outputs [n, n_main] and depth-head outputs [n] (NaN without a depth
        head), float32.
    """
    task.eval()
    embeddings = torch.as_tensor(np.asarray(embeddings), device=setup.device).float()
    bank = ContextBank(embeddings, neighbours, groups)
    main, depth = [], []
    for start in range(0, len(embeddings), batch_size):
        index = torch.arange(start, min(start + batch_size, len(embeddings)))
        with autocast(setup):
            out = task(
                None, features=embeddings[index.to(setup.device)], context=bank.context(index)
            )
        main.append(out["output"].float())
        d = out["depth"].float() if "depth" in out else torch.full((len(index),), torch.nan)
        depth.append(d.to(main[-1].device))
    if not main:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.float32)
    return torch.cat(main).cpu().numpy(), torch.cat(depth).cpu().numpy()
