"""SimCLR's loss against hand-computed values, and its views."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from brstnet.pretraining.simclr import SimCLR, nt_xent, random_resized_crop, two_views
from brstnet.training.augment import ScannerAugmentation
from brstnet.training.data import InputNormaliser


def test_nt_xent_equals_the_hand_computed_value() -> None:
    # two windows, orthogonal, each view identical to the other: for every anchor the
    # positive has cosine 1 and both negatives cosine 0, so with tau = 1 each of the four
    # anchors costs -log(e / (e + 1 + 1)) = log(2 + e) - 1
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert nt_xent(z, z.clone(), 1.0).item() == pytest.approx(math.log(2 + math.e) - 1, abs=1e-6)
    # tau = 0.5 doubles every logit: log(2 + e^2) - 2; the length of z does not matter
    assert nt_xent(3 * z, z, 0.5).item() == pytest.approx(math.log(2 + math.e**2) - 2, abs=1e-6)


def _reference(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    """NT-Xent written out anchor by anchor (Chen et al. 2020, eq. 1)."""
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n, b = len(z), len(z1)
    losses = []
    for i in range(n):
        positive = (i + b) % n
        sims = {k: float(z[i] @ z[k]) / tau for k in range(n) if k != i}
        denominator = sum(math.exp(s) for s in sims.values())
        losses.append(-math.log(math.exp(sims[positive]) / denominator))
    return sum(losses) / n


def test_nt_xent_equals_the_anchor_by_anchor_definition() -> None:
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    got = nt_xent(torch.tensor(z1), torch.tensor(z2), 0.3).item()
    assert got == pytest.approx(_reference(z1, z2, 0.3), rel=1e-5)


def test_nt_xent_rejects_views_of_different_shapes() -> None:
    with pytest.raises(ValueError, match="must both be"):
        nt_xent(torch.zeros(2, 3), torch.zeros(3, 3), 0.1)


def test_crop_keeps_the_shape_and_scale_one_is_the_identity() -> None:
    x = torch.rand(4, 3, 16, 16)
    assert random_resized_crop(x, 1.0, torch.Generator().manual_seed(0)) is x
    out = random_resized_crop(x, 0.3, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    # the whole image, centred, resamples to itself
    same = random_resized_crop(x, 1.0 - 1e-9, torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, x, atol=1e-4, rtol=0)


def test_views_come_from_the_generator_alone() -> None:
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), np.uint8))
    norm = InputNormaliser((0.5,) * 3, (0.25,) * 3, torch.device("cpu"))
    scanner = ScannerAugmentation(stain_jitter=0.2)

    def views(seed: int):
        return two_views(
            images, norm, torch.Generator().manual_seed(seed), crop_scale=0.5, scanner=scanner
        )

    a1, a2 = views(0)
    b1, b2 = views(0)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert a1.shape == (3, 3, 16, 16) and not torch.equal(a1, a2)
    assert not torch.equal(views(1)[0], a1)


def test_the_model_projects_the_trunks_features() -> None:
    model = SimCLR("test_resnet", img_size=32, hidden=16, out=8)
    assert model(torch.rand(4, 3, 32, 32)).shape == (4, 8)
