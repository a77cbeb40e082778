"""Augmentations for other scanners and stain protocols, on whole batches on the device.

Each works on [B, 3, H, W] images in [0, 1] (before the model's mean / std), draws its
per-sample parameters from a CPU generator (reproducible whatever the device; no host
synchronisation) and is set in physical units, so that it means the same at any patch
size:

- :func:`stain_jitter`: HED colour augmentation (Tellez et al., *IEEE TMI* 2018): the
  optical densities are deconvolved into haematoxylin, eosin and DAB with Ruifrok and
  Johnston's matrix (scikit-image's), each scaled by U(1 - s, 1 + s) and shifted by
  U(-s, s) x 0.1 (natural-log OD units), and recomposed;
- :func:`resolution_jitter`: a coarser scan: each patch is resampled (anti-aliased) down
  to a pixel size drawn between its own and ``max_um`` micrometres per pixel, and back;
- :func:`blur`: out-of-focus scanning: a Gaussian blur with sigma drawn in [0, max]
  micrometres.

Resampling and blur use torch's ``interpolate(antialias=True)`` and torchvision's
``gaussian_blur``; sigmas and pixel sizes are drawn per sample and rounded to a few
levels, each level applied to the whole batch and kept per sample with ``torch.where``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import hed_from_rgb, rgb_from_hed
from torchvision.transforms.v2 import functional as TF

#: How many pixel sizes / blur sigmas a batch is resampled at (per-sample draws rounded).
LEVELS = 4
#: Stain shift range per unit of ``stain_jitter`` (natural-log optical density).
SHIFT_SCALE = 0.1


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def stain_jitter(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Per-sample HED scale and shift of [B, 3, H, W] images in [0, 1] (0 = off)."""
    if strength <= 0:
        return x
    b = x.shape[0]
    dtype, device = x.dtype, x.device
    to_hed = torch.as_tensor(hed_from_rgb, dtype=torch.float32, device=device)
    to_rgb = torch.as_tensor(rgb_from_hed, dtype=torch.float32, device=device)
    scale = _uniform(3 * b, 1 - strength, 1 + strength, generator).view(b, 3, 1, 1)
    shift = _uniform(3 * b, -strength, strength, generator).view(b, 3, 1, 1) * SHIFT_SCALE
    od = -torch.log((x.float() * 255.0 + 1.0) / 256.0)
    hed = torch.einsum("bchw,cd->bdhw", od, to_hed)
    hed = hed * scale.to(device, torch.float32) + shift.to(device, torch.float32)
    rgb = (256.0 * torch.exp(-torch.einsum("bchw,cd->bdhw", hed, to_rgb)) - 1.0) / 255.0
    return rgb.clamp_(0.0, 1.0).to(dtype)


def _levels(draws: torch.Tensor, low: float, high: float) -> tuple[torch.Tensor, np.ndarray]:
    """Per-sample draws in [low, high] rounded to ``LEVELS`` values: (level index, values)."""
    values = np.linspace(low, high, LEVELS)
    index = torch.round((draws - low) / max(high - low, 1e-12) * (LEVELS - 1)).long()
    return index, values


def _per_level(x: torch.Tensor, index: torch.Tensor, values: np.ndarray, apply) -> torch.Tensor:
    """``apply(x, value)`` for each level, each sample keeping its own level's result."""
    out = x
    where = index.to(x.device, non_blocking=True).view(-1, 1, 1, 1)
    for level, value in enumerate(values):
        changed = apply(x, float(value))
        if changed is not x:
            out = torch.where(where == level, changed, out)
    return out


def resolution_jitter(
    x: torch.Tensor, um_per_px: float, max_um: float | None, generator: torch.Generator
) -> torch.Tensor:
    """Each patch as if scanned at a pixel size drawn in [``um_per_px``, ``max_um``].

    Args:
        x: [B, 3, H, W] in [0, 1].
        um_per_px: The patches' own micrometres per pixel (window / size).
        max_um: The coarsest pixel size (None or <= ``um_per_px``: off).
    """
    if max_um is None or max_um <= um_per_px:
        return x
    size = x.shape[-2:]
    draws = _uniform(x.shape[0], um_per_px, max_um, generator)
    index, values = _levels(draws, um_per_px, max_um)

    def resample(images: torch.Tensor, pixel_um: float) -> torch.Tensor:
        factor = um_per_px / pixel_um
        low = [max(1, round(s * factor)) for s in size]
        if list(low) == list(size):
            return images
        small = F.interpolate(
            images, size=low, mode="bilinear", antialias=True, align_corners=False
        )
        return F.interpolate(small, size=size, mode="bilinear", align_corners=False)

    return _per_level(x, index, values, resample)


def blur(
    x: torch.Tensor, um_per_px: float, max_sigma_um: float, generator: torch.Generator
) -> torch.Tensor:
    """Gaussian blur with sigma drawn in [0, ``max_sigma_um``] micrometres per sample."""
    if max_sigma_um <= 0:
        return x
    draws = _uniform(x.shape[0], 0.0, max_sigma_um, generator)
    index, values = _levels(draws, 0.0, max_sigma_um)

    def gaussian(images: torch.Tensor, sigma_um: float) -> torch.Tensor:
        sigma = sigma_um / um_per_px
        if sigma < 0.1:
            return images
        kernel = 2 * int(np.ceil(3 * sigma)) + 1
        return TF.gaussian_blur(images, [kernel, kernel], [sigma, sigma])

    return _per_level(x, index, values, gaussian)


@dataclass(frozen=True)
class ScannerAugmentation:
    """Stain, resolution and focus augmentation of training batches.

    Attributes:
        stain_jitter: :func:`stain_jitter` strength (0 = off).
        resolution_jitter_um: :func:`resolution_jitter`'s coarsest pixel size (None = off).
        blur_sigma_um: :func:`blur`'s largest sigma in micrometres (0 = off).
        um_per_px: The patches' micrometres per pixel (patch window / patch size).
    """

    stain_jitter: float = 0.0
    resolution_jitter_um: float | None = None
    blur_sigma_um: float = 0.0
    um_per_px: float | None = None

    def __post_init__(self) -> None:
        physical = (self.resolution_jitter_um is not None) or self.blur_sigma_um > 0
        if physical and not (self.um_per_px and self.um_per_px > 0):
            raise ValueError(
                "resolution and blur augmentation need the patches' micrometres per pixel"
            )

    @property
    def active(self) -> bool:
        return (
            self.stain_jitter > 0 or self.resolution_jitter_um is not None or self.blur_sigma_um > 0
        )

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> augmented, same shape (stain, then optics)."""
        if not self.active:
            return x
        x = stain_jitter(x, self.stain_jitter, generator)
        if self.um_per_px:
            x = resolution_jitter(x, self.um_per_px, self.resolution_jitter_um, generator)
            x = blur(x, self.um_per_px, self.blur_sigma_um, generator)
        return x
