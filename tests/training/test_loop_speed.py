"""What the loop does to keep a GPU busy, checked on CPU with a tiny model: loaders
built once, batched test-time augmentation, learning-rate scaling for large batches,
float16 with a gradient scaler, and torch.compile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import brstnet.training.loop as loop
from brstnet.config import TrainingParams
from brstnet.training.data import InputNormaliser, dihedral_transform
from brstnet.training.devices import DeviceSetup, resolve_device
from brstnet.training.loop import LoopConfig, fit, predict
from tests.training.test_loop import CFG, _data, _task

CPU = resolve_device("cpu")


def test_training_and_validation_loaders_are_built_once_per_fit(monkeypatch) -> None:
    """Workers are not respawned each epoch: one loader for training, one for validation."""
    built = []
    make, prediction = loop.make_loader, loop.prediction_loader

    def counting_make(*args, **kwargs):
        built.append("train")
        return make(*args, **kwargs)

    def counting_prediction(*args, **kwargs):
        built.append("val")
        return prediction(*args, **kwargs)

    monkeypatch.setattr(loop, "make_loader", counting_make)
    monkeypatch.setattr(loop, "prediction_loader", counting_prediction)
    data = _data()
    result = fit(_task(), data, data, CFG, CPU)
    assert len(result.history) == CFG.epochs == 4
    assert built == ["train", "val"]
    assert all(np.isfinite(h["val_mean_r"]) for h in result.history)


def test_validation_with_persistent_workers_matches_in_process_validation() -> None:
    data = _data()
    with_workers = DeviceSetup(torch.device("cpu"), None, False, False, num_workers=1)
    a = fit(_task(), data, data, CFG, CPU).history
    b = fit(_task(), data, data, CFG, with_workers).history
    assert [h["val_mean_r"] for h in a] == [h["val_mean_r"] for h in b]
    assert [h["loss"] for h in a] == [h["loss"] for h in b]


def test_batched_tta_is_the_mean_of_the_eight_views_one_by_one() -> None:
    data = _data(n=12)
    task = _task().eval()
    batched = predict(task, data, CPU, batch_size=5, tta=True)
    x = InputNormaliser.for_task(task, CPU.device)(torch.from_numpy(data.patches[data.rows]))
    with torch.no_grad():
        views = [task(dihedral_transform(x, k))["output"] for k in range(8)]
    expected = torch.stack(views).mean(0).numpy()
    plain = predict(task, data, CPU, batch_size=5)
    assert batched.shape == expected.shape == (12, 4)
    np.testing.assert_allclose(batched, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(batched, plain, atol=1e-3)  # the views do differ on these images


@pytest.mark.parametrize(
    ("rule", "batch", "expected"),
    [
        ("none", 256, 1e-3),
        ("linear", 256, 8e-3),
        ("sqrt", 256, 1e-3 * 8**0.5),
        ("linear", 32, 1e-3),
    ],
)
def test_learning_rate_scales_with_the_batch(rule: str, batch: int, expected: float) -> None:
    cfg = LoopConfig(epochs=1, batch_size=batch, lr=1e-3, lr_scaling=rule, scheduler="constant")
    assert cfg.scaled_lr == pytest.approx(expected)
    # and the optimizer trains at that rate
    result = fit(_task(), _data(), None, cfg, CPU)
    assert result.history[0]["lr"] == pytest.approx(expected)


def test_lr_scaling_comes_from_the_parameters() -> None:
    params = TrainingParams(
        backbones=["test_resnet"], batch_size=128, lr=2e-3, lr_scaling="sqrt", lr_reference_batch=32
    )
    assert LoopConfig.from_params(params, epochs=3).scaled_lr == pytest.approx(4e-3)
    with pytest.raises(ValueError, match="lr_scaling"):
        TrainingParams(backbones=["test_resnet"], lr_scaling="cubic")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mixed_precision_trains_and_float16_keeps_a_gradient_scaler(
    dtype: torch.dtype, tmp_path: Path
) -> None:
    """float16 trains through a gradient scaler (its scale is checkpointed); bfloat16 needs none."""
    setup = DeviceSetup(torch.device("cpu"), dtype, False, False, 0)
    data = _data()
    cfg = LoopConfig(
        epochs=10, batch_size=8, optimizer="adamw", lr=5e-3, scheduler="constant", dihedral=False
    )
    ckpt = tmp_path / "run.pt"
    result = fit(_task(), data, data, cfg, setup, checkpoint=ckpt)
    assert result.history[-1]["loss_main"] < 0.7 * result.history[0]["loss_main"]
    scaler = torch.load(ckpt, weights_only=True)["scaler"]
    if dtype == torch.float16:
        assert scaler["scale"] > 0 and scaler["_growth_tracker"] >= 0
    else:
        assert scaler == {}


def test_compile_is_off_on_cpu_unless_asked() -> None:
    assert resolve_device("cpu").compile is False
    assert resolve_device("cpu", compile="auto").compile is False
    assert resolve_device("cpu", compile=True).compile is True
    assert TrainingParams(backbones=["test_resnet"]).compile == "auto"


def test_compiled_fit_trains_like_eager_and_keeps_checkpoints_portable(tmp_path: Path) -> None:
    """torch.compile (inductor, here on CPU) in place: same state_dict keys, a checkpoint
    an eager model loads, predictions equal to the eager model's with those weights."""
    data = _data()
    cfg = LoopConfig(epochs=2, batch_size=8, optimizer="sgd", lr=1e-2, scheduler="constant", seed=1)
    eager, compiled = _task(), _task()
    fit(eager, data, None, cfg, CPU)
    setup = resolve_device("cpu", compile=True)
    result = fit(compiled, data, None, cfg, setup, checkpoint=tmp_path / "c.pt")
    assert result.first_step_s is not None and result.first_step_s > 0
    assert list(compiled.state_dict()) == list(eager.state_dict())
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[key], value, rtol=1e-3, atol=1e-4)
    plain = _task(seed=7)
    plain.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True)["task"])
    np.testing.assert_allclose(
        predict(plain, data, CPU), predict(compiled, data, setup), rtol=1e-4, atol=1e-5
    )
