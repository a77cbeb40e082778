"""The CUDA path: mixed precision, channels_last, loader workers, torch.compile and a
short fit whose loss falls. Marked ``cuda``; skipped, with the reason, where torch sees
no GPU (the development and CI machines). Run on a GPU machine with
``pytest -m cuda tests/training/test_cuda.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brstnet.training.data import InputNormaliser, PatchBatches, dihedral_transform
from brstnet.training.devices import DeviceSetup, resolve_device
from brstnet.training.loop import LoopConfig, fit, predict
from tests.training.test_loop import _task

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _learnable(n: int = 256, size: int = 32) -> PatchBatches:
    """Targets that follow the patches' brightness: a model can learn them in two epochs."""
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    brightness = patches.reshape(n, -1).mean(1, keepdims=True) / 255 - 0.5
    targets = (8 * brightness * rng.normal(size=(1, 4)) + 0.1 * rng.normal(size=(n, 4))).astype(
        np.float32
    )
    return PatchBatches(patches, np.arange(n), targets, rng.normal(size=(n, 6)).astype(np.float32))


CFG = LoopConfig(epochs=2, batch_size=32, optimizer="adamw", lr=3e-3, scheduler="constant")


def test_auto_device_is_cuda_with_amp_channels_last_workers_and_compile() -> None:
    setup = resolve_device("auto", compile="auto")
    assert setup.device.type == "cuda"
    expected = torch.bfloat16 if torch.cuda.get_device_capability() >= (8, 0) else torch.float16
    assert setup.amp_dtype == expected
    assert setup.channels_last and setup.pin_memory and setup.num_workers > 0 and setup.compile


def test_two_epoch_fit_loss_falls_with_amp_channels_last_and_workers() -> None:
    setup = resolve_device("cuda", compile=False)
    data = _learnable()
    task = _task()
    result = fit(task, data, data, CFG, setup)
    losses = [h["loss_main"] for h in result.history]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert all(np.isfinite(h["val_mean_r"]) for h in result.history)
    assert next(task.parameters()).device.type == "cuda"
    conv = next(p for p in task.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not torch.backends.cudnn.benchmark  # switched on for the fit only


def test_float16_trains_with_a_gradient_scaler(tmp_path: Path) -> None:
    setup = DeviceSetup(torch.device("cuda"), torch.float16, True, True, 2)
    result = fit(_task(), _learnable(), None, CFG, setup, checkpoint=tmp_path / "c.pt")
    assert result.history[1]["loss_main"] < result.history[0]["loss_main"]
    assert torch.load(tmp_path / "c.pt", weights_only=True)["scaler"]["scale"] > 0


def test_compiled_fit_on_cuda_trains_and_keeps_state_dict_keys() -> None:
    setup = resolve_device("cuda", compile=True)
    task = _task()
    keys = list(task.state_dict())
    result = fit(task, _learnable(), None, CFG, setup)
    assert result.history[1]["loss_main"] < result.history[0]["loss_main"]
    assert result.first_step_s is not None and result.first_step_s > 0
    assert list(task.state_dict()) == keys


def test_batched_tta_on_cuda_is_the_mean_of_the_views() -> None:
    setup = resolve_device("cuda", amp=False, compile=False)
    data = _learnable(n=40)
    task = _task().to(setup.device)
    batched = predict(task, data, setup, batch_size=16, tta=True)
    x = InputNormaliser.for_task(task, setup.device, channels_last=True)(
        torch.from_numpy(data.patches)
    )
    with torch.no_grad():
        views = torch.stack([task(dihedral_transform(x, k))["output"] for k in range(8)])
    np.testing.assert_allclose(batched, views.mean(0).cpu().numpy(), rtol=1e-3, atol=1e-4)
