"""Prediction: the one path from uint8 patches to the model's main-head output.

Shared by validation, held-out evaluation (:func:`predict` over the patch store) and
whole-slide inference (:func:`predict_images` over patches cut on the fly).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from .data import InputNormaliser, PatchBatches, dihedral_transform, make_loader
from .devices import DeviceSetup


@torch.no_grad()
def predict_images(
    task: torch.nn.Module,
    batches: Iterable[torch.Tensor | np.ndarray],
    setup: DeviceSetup,
    *,
    tta: bool = False,
) -> np.ndarray:
    """Main-head predictions for batches of uint8 patches.

    The one prediction path, shared by held-out evaluation and whole-slide inference:
    the images are normalised as the task's model was trained, optionally averaged over
    the 8 flips/rotations (test-time augmentation, ST-Net).

    Args:
        task: An :class:`~brstnet.models.ExpressionTask` (on ``setup.device``).
        batches: [B, H, W, 3] uint8 arrays or tensors.

    Returns:
        [n, n_main] float32.
    """
    task.eval()
    if setup.channels_last:  # as in training: the same kernels whatever built the task
        task.to(memory_format=torch.channels_last)
    normalise = InputNormaliser.for_task(task, setup.device, channels_last=setup.channels_last)
    views = range(8) if tta else range(1)
    outputs = []
    for images in batches:
        images = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
        x = normalise(images)
        total = None
        for k in views:
            with torch.autocast(
                setup.device.type, dtype=setup.amp_dtype, enabled=setup.amp_dtype is not None
            ):
                y = task(dihedral_transform(x, k) if k else x)["output"].float()
            total = y if total is None else total + y
        outputs.append((total / len(views)).cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def predict(
    task: torch.nn.Module,
    data: PatchBatches,
    setup: DeviceSetup,
    *,
    batch_size: int = 64,
    tta: bool = False,
) -> np.ndarray:
    """Main-head predictions [n, n_main] for every patch of ``data`` (see :func:`predict_images`)."""
    loader = make_loader(
        data,
        batch_size=batch_size,
        shuffle=False,
        num_workers=setup.num_workers,
        pin_memory=setup.pin_memory,
    )
    return predict_images(task, (batch["images"] for batch in loader), setup, tta=tta)
