"""Prediction: the one path from uint8 patches to the model's main-head output.

Shared by validation (:func:`predict_loader` over a loader the training loop keeps for
all epochs), held-out evaluation (:func:`predict` over the patch store) and whole-slide
inference (:func:`predict_images` over patches cut on the fly).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader

from .context import predict_from_embeddings, require_neighbours, uses_context
from .data import InputNormaliser, PatchBatches, dihedral_transform, make_loader
from .devices import DeviceSetup, autocast

#: Test-time augmentation: the 8 symmetries of the square (ST-Net).
TTA_VIEWS = 8


def tta_views(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [8 * B, C, H, W]: the 8 flips / rotations, view-major, one batch."""
    views = torch.cat([dihedral_transform(x, k) for k in range(TTA_VIEWS)])
    if x.is_contiguous(memory_format=torch.channels_last):
        return views.contiguous(memory_format=torch.channels_last)
    return views


@torch.no_grad()
def predict_images(
    task: torch.nn.Module,
    batches: Iterable[torch.Tensor | np.ndarray],
    setup: DeviceSetup,
    *,
    tta: bool = False,
    depth: bool = False,
    features: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Main-head (and depth-head) predictions for batches of uint8 patches.

    The one prediction path, shared by held-out evaluation and whole-slide inference:
    the images are normalised as the task's model was trained, optionally averaged over
    the 8 flips/rotations (test-time augmentation, ST-Net), which run as one batched
    forward pass of 8 x the batch. Outputs stay on the device until the end: no host
    synchronisation per batch.

    Args:
        task: An :class:`~brstnet.models.ExpressionTask` (on ``setup.device``).
        batches: [B, H, W, 3] uint8 arrays or tensors.
        depth: Also return the depth head's output.
        features: Return the trunk's embeddings [n, D] instead (a context model's first
            pass; :mod:`brstnet.training.context`).

    Returns:
        [n, n_main] float32; with ``depth``, also [n] float32: the depth head's z-scored
        log read depth (NaN for a model without a depth head).
    """
    task.eval()
    if setup.channels_last:  # as in training: the same kernels whatever built the task
        task.to(memory_format=torch.channels_last)
    normalise = InputNormaliser.for_task(task, setup.device, channels_last=setup.channels_last)
    outputs, depths = [], []
    for images in batches:
        images = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
        x = normalise(images)
        if features:
            with autocast(setup):
                y = task.model.trunk(tta_views(x) if tta else x).float()
            outputs.append(y.view(TTA_VIEWS, len(x), -1).mean(0) if tta else y)
            continue
        with autocast(setup):
            out = task(tta_views(x) if tta else x)
        y = out["output"].float()
        d = out["depth"].float() if "depth" in out else torch.full((len(y),), torch.nan)
        if tta:
            y = y.view(TTA_VIEWS, len(x), -1).mean(0)
            d = d.view(TTA_VIEWS, len(x)).mean(0)
        outputs.append(y)
        depths.append(d.to(y.device))
    if not outputs:
        empty = np.zeros((0, 0), np.float32)
        return (empty, np.zeros(0, np.float32)) if depth else empty
    main = torch.cat(outputs).cpu().numpy()
    if features:
        return main
    return (main, torch.cat(depths).cpu().numpy()) if depth else main


def predict_loader(
    task: torch.nn.Module,
    loader: DataLoader,
    setup: DeviceSetup,
    *,
    tta: bool = False,
    depth: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Main-head (and, with ``depth``, depth-head) predictions for every batch of a
    (reusable, ordered) loader over :class:`PatchBatches`.

    A context model is run in two passes: every spot's embedding, then the context (its
    neighbours and section, from the loader's :class:`PatchBatches`) and the heads.
    """
    images = (batch["images"] for batch in loader)
    if not uses_context(task):
        return predict_images(task, images, setup, tta=tta, depth=depth)
    data: PatchBatches = loader.dataset
    require_neighbours(data.neighbours, data.groups, "prediction")
    embeddings = predict_images(task, images, setup, tta=tta, features=True)
    main, depth_z = predict_from_embeddings(task, embeddings, data.neighbours, data.groups, setup)
    return (main, depth_z) if depth else main


def predict(
    task: torch.nn.Module,
    data: PatchBatches,
    setup: DeviceSetup,
    *,
    batch_size: int = 64,
    tta: bool = False,
    depth: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Main-head predictions [n, n_main] (and, with ``depth``, the depth head's [n]) for
    every patch of ``data`` (see :func:`predict_images`)."""
    return predict_loader(
        task, prediction_loader(data, setup, batch_size=batch_size), setup, tta=tta, depth=depth
    )


def prediction_loader(data: PatchBatches, setup: DeviceSetup, *, batch_size: int) -> DataLoader:
    """An ordered loader over ``data`` with ``setup``'s workers and pinned memory."""
    return make_loader(
        data,
        batch_size=batch_size,
        shuffle=False,
        num_workers=setup.num_workers,
        pin_memory=setup.pin_memory,
    )
