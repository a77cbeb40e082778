"""Device handling, in one place: the model code never calls .cuda()."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceSetup:
    """Where and how to run.

    Attributes:
        device: The torch device.
        amp_dtype: Autocast dtype (bfloat16 / float16 on CUDA), None for full precision.
        channels_last: Use the channels-last memory format (faster convolutions on GPU).
        pin_memory: Pin host batches for asynchronous copies.
        num_workers: DataLoader worker processes.
    """

    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    pin_memory: bool
    num_workers: int


def resolve_device(
    name: str = "auto", *, amp: bool = True, num_workers: int | None = None
) -> DeviceSetup:
    """``auto``: CUDA with mixed precision and channels_last when present, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "device 'cuda' was asked for but torch sees no GPU; use device: auto or cpu"
            )
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
        return DeviceSetup(device, dtype if amp else None, True, True, workers)
    return DeviceSetup(device, None, False, False, 0 if num_workers is None else num_workers)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator for shuffling and augmentation (reproducible whatever the device)."""
    return torch.Generator().manual_seed(seed)
