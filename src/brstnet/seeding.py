"""Local random state: seed torch for a block and leave the caller's state as it was.

Nodes and library code never change the process-wide random state: shuffling and
augmentation draw from their own generators, and what draws from torch's global RNG
(weight initialisation, dropout, loader seeds) runs inside :func:`local_seed`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def rng_devices() -> list[int]:
    """Every visible CUDA device: ``torch.manual_seed`` seeds them all, so a local seed
    must fork them all."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextmanager
def local_seed(seed: int) -> Iterator[None]:
    """Seed torch's global RNGs (CPU and CUDA) with ``seed`` inside the block only."""
    with torch.random.fork_rng(devices=rng_devices()):
        torch.manual_seed(seed)
        yield
