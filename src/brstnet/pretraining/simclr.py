"""SimCLR (Chen et al., ICML 2020): a trunk and a projection head learn to tell two
augmented views of the same window from the views of every other window in the batch.

Compact on purpose: the NT-Xent loss, a two-layer projection head and batched view
augmentation on the device. ``lightly`` was checked and not used: it installs
pytorch-lightning and hydra-core for what is here about 100 lines.

The views are the project's own augmentations: a random resized crop (square, area
fraction U(``crop_scale``, 1), resampled with ``grid_sample``), the stain, resolution and
focus augmentation of :mod:`brstnet.training.augment`, and the dihedral flips and
rotations of :mod:`brstnet.training.data`; every draw comes from one CPU generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.backbones import create_backbone
from ..training.augment import ScannerAugmentation
from ..training.data import InputNormaliser, dihedral

__all__ = ["SimCLR", "nt_xent", "random_resized_crop", "two_views"]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """The normalised temperature-scaled cross-entropy of SimCLR.

    Each of the 2B projections is an anchor whose positive is the other view of its
    window; the other 2B - 2 projections are its negatives. Cosine similarities divided
    by ``temperature``; the mean cross-entropy over the 2B anchors.

    Args:
        z1: [B, D] projections of the first views.
        z2: [B, D] projections of the second views (row i: the same window as in ``z1``).
        temperature: tau > 0.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be [B, D], got {tuple(z1.shape)}, {tuple(z2.shape)}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positives = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(logits, positives)


class SimCLR(nn.Module):
    """A timm trunk (:func:`brstnet.models.create_backbone`) with SimCLR's projection head
    (linear, batch norm, ReLU, linear)."""

    def __init__(self, backbone: str, *, img_size: int, hidden: int = 512, out: int = 128):
        super().__init__()
        self.trunk, width = create_backbone(backbone, img_size=img_size)
        self.projector = nn.Sequential(
            nn.Linear(width, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.trunk(x))


def random_resized_crop(
    x: torch.Tensor, min_scale: float, generator: torch.Generator
) -> torch.Tensor:
    """A random square crop per sample, resized back to the input's size (bilinear).

    Args:
        x: [B, C, H, W] square images.
        min_scale: The smallest area fraction of a crop (>= 1: no crop, ``x`` returned).
        generator: CPU generator (two draws per sample: area, and offset in x and y).
    """
    if min_scale >= 1.0:
        return x
    b = x.shape[0]
    area = min_scale + (1.0 - min_scale) * torch.rand(b, generator=generator)
    side = area.sqrt()
    offset = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - side).unsqueeze(1)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = side
    theta[:, 1, 1] = side
    theta[:, :, 2] = offset
    theta = theta.to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def two_views(
    images: torch.Tensor,
    normalise: InputNormaliser,
    generator: torch.Generator,
    *,
    crop_scale: float,
    scanner: ScannerAugmentation,
    flips: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented views of a batch of uint8 windows, normalised for the trunk.

    Args:
        images: [B, H, W, 3] uint8 (host).
        normalise: The trunk's input normalisation on the device.
        generator: CPU generator every draw comes from.
        crop_scale: :func:`random_resized_crop`'s smallest area fraction (1: off).
        scanner: Stain / resolution / focus augmentation.
        flips: Random flips and 90 degree rotations.
    """
    x = normalise.to_unit(images)
    views = []
    for _ in range(2):
        view = scanner(random_resized_crop(x, crop_scale, generator), generator)
        if flips:
            view = dihedral(view, generator)
        views.append(normalise.standardise(view))
    return views[0], views[1]
