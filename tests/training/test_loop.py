"""The training loop on tiny data: overfitting, determinism, resume, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brstnet.models import ExpressionTask, ModelSpec
from brstnet.training.data import (
    InputNormaliser,
    PatchBatches,
    dihedral,
    dihedral_transform,
    make_loader,
)
from brstnet.training.devices import DeviceSetup, resolve_device
from brstnet.training.loop import LoopConfig, fit, predict

CPU = resolve_device("cpu")


def _data(n: int = 16, seed: int = 0) -> PatchBatches:
    rng = np.random.default_rng(seed)
    patches = rng.integers(0, 255, (n + 4, 32, 32, 3), dtype=np.uint8)
    rows = np.arange(2, n + 2)  # not the identity: the loader must follow rows
    targets = rng.normal(size=(n, 4)).astype(np.float32)
    aux = rng.normal(size=(n, 6)).astype(np.float32)
    return PatchBatches(patches, rows, targets, aux)


def _task(seed: int = 0) -> ExpressionTask:
    spec = ModelSpec("test_resnet", n_main=4, img_size=32, n_aux=6, aux_weight=1.0)
    return spec.build(seed=seed)


CFG = LoopConfig(epochs=4, batch_size=8, optimizer="adamw", lr=3e-3, scheduler="constant", seed=3)


def test_loader_reads_the_right_rows() -> None:
    data = _data()
    batch = next(iter(make_loader(data, batch_size=5, shuffle=False)))
    np.testing.assert_array_equal(batch["images"].numpy(), data.patches[2:7])
    np.testing.assert_array_equal(batch["targets"].numpy(), data.targets[:5])
    assert batch["aux"].shape == (5, 6)


def test_overfits_a_few_patches() -> None:
    data = _data()
    cfg = LoopConfig(
        epochs=40, batch_size=8, optimizer="adamw", lr=3e-3, scheduler="constant", dihedral=False
    )
    result = fit(_task(), data, data, cfg, CPU)
    first, last = result.history[0]["loss_main"], result.history[-1]["loss_main"]
    assert last < 0.2 * first
    assert result.history[-1]["val_mean_r"] > 0.9
    assert set(result.history[0]) >= {
        "loss",
        "loss_main",
        "loss_aux",
        "val_mean_r",
        "val_loss",
        "images_per_s",
    }
    assert result.best_epoch is not None and result.best_state is not None


def test_same_seed_same_numbers() -> None:
    data = _data()
    a = fit(_task(), data, data, CFG, CPU).history
    b = fit(_task(), data, data, CFG, CPU).history
    for x, y in zip(a, b, strict=True):
        assert x["loss"] == y["loss"] and x["val_mean_r"] == y["val_mean_r"]


@pytest.mark.parametrize(
    "setup",
    [CPU, DeviceSetup(torch.device("cpu"), None, False, False, num_workers=2)],
    ids=["in-process", "2-loader-workers"],
)
def test_resume_after_interruption_ends_where_an_uninterrupted_run_ends(
    tmp_path: Path, setup: DeviceSetup
) -> None:
    """Also with persistent loader workers, which prefetch the sampler's draws."""
    data = _data()
    straight = _task()
    fit(straight, data, data, CFG, setup)

    class Interrupted(Exception):
        pass

    def stop_after_two(epoch: int) -> None:
        if epoch == 2:
            raise Interrupted

    checkpoint = tmp_path / "ckpt" / "run.pt"
    with pytest.raises(Interrupted):
        fit(_task(), data, data, CFG, setup, checkpoint=checkpoint, on_epoch_end=stop_after_two)
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["run.pt"]  # no temp file left
    resumed = _task(seed=99)  # fresh weights: everything must come from the checkpoint
    result = fit(resumed, data, data, CFG, setup, checkpoint=checkpoint)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_checkpoint_from_other_settings_is_not_resumed(tmp_path: Path, caplog) -> None:
    data = _data()
    checkpoint = tmp_path / "run.pt"
    fit(_task(), data, None, CFG, CPU, checkpoint=checkpoint)
    other = LoopConfig(**{**CFG.__dict__, "lr": 1e-4})
    result = fit(_task(), data, None, other, CPU, checkpoint=checkpoint)
    assert "written with other settings; starting afresh" in caplog.text
    assert len(result.history) == 4


def test_dihedral_group() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    views = [dihedral_transform(x, k) for k in range(8)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8  # all 8 symmetries differ
    assert torch.equal(views[0], x)
    batch = torch.arange(16.0 * 64).view(64, 1, 4, 4)
    out = dihedral(batch, torch.Generator().manual_seed(0))
    # sample i gets exactly the k_i drawn from the generator, and all 8 occur
    draws = torch.randint(0, 8, (64,), generator=torch.Generator().manual_seed(0))
    assert set(draws.tolist()) == set(range(8))
    for i in range(64):
        assert torch.equal(out[i], dihedral_transform(batch[i], int(draws[i])))


def test_tta_prediction_is_invariant_for_symmetric_inputs() -> None:
    data = _data(n=4)
    data.patches[:] = 128  # constant images look the same in every orientation
    task = _task()
    plain = predict(task, data, CPU)
    tta = predict(task, data, CPU, tta=True)
    assert plain.shape == tta.shape == (4, 4)
    np.testing.assert_allclose(plain, tta, atol=1e-5)


def test_fit_and_build_leave_the_global_random_state_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state().clone()
    task = _task(seed=5)
    fit(task, _data(), None, LoopConfig(epochs=1, batch_size=8), resolve_device("cpu"))
    assert torch.equal(torch.get_rng_state(), before)
    # and the seeded build is reproducible whatever the global state
    torch.manual_seed(999)
    again = _task(seed=5)
    first = next(iter(_task(seed=5).state_dict().values()))
    assert torch.equal(first, next(iter(again.state_dict().values())))


def test_prediction_normalises_with_the_models_own_statistics() -> None:
    """A model whose spec says other input statistics sees other inputs."""
    data = _data()
    setup = resolve_device("cpu")
    spec = ModelSpec("test_resnet", n_main=4, img_size=32)
    shifted = ModelSpec("test_resnet", n_main=4, img_size=32, mean=(0.2, 0.2, 0.2), std=(0.5,) * 3)
    a, b = spec.build(seed=0), shifted.build(seed=0)
    b.load_state_dict(a.state_dict())
    pa, pb = predict(a, data, setup, batch_size=4), predict(b, data, setup, batch_size=4)
    assert not np.allclose(pa, pb)
    # the same as normalising by hand with the shifted statistics
    x = torch.from_numpy(data.patches[data.rows]).permute(0, 3, 1, 2).float() / 255
    x = (x - 0.2) / 0.5
    with torch.no_grad():
        expected = b.eval()(x)["output"].numpy()
    np.testing.assert_allclose(pb, expected, rtol=1e-5, atol=1e-5)


def test_a_non_finite_loss_stops_training_naming_epoch_and_run(tmp_path: Path) -> None:
    data = _data()
    data.targets[3, 0] = np.nan  # as a diverged model would give
    ckpt = tmp_path / "run.pt"
    with pytest.raises(FloatingPointError, match=r"resnet_x fold 2: .* not finite in epoch 1"):
        fit(_task(), data, None, CFG, CPU, checkpoint=ckpt, desc="resnet_x fold 2")
    assert not ckpt.exists()  # no weights written for the broken epoch


def test_epoch_losses_are_the_sample_weighted_means_of_the_batches() -> None:
    """Accumulated on the device, read once per epoch: the same numbers as step by step."""
    data, task = _data(n=20), _task()
    cfg = LoopConfig(epochs=1, batch_size=8, dihedral=False, lr=1e-9, optimizer="sgd", seed=4)
    result = fit(task, data, None, cfg, CPU)
    # with lr ~ 0 the weights barely move: recompute the epoch's losses batch by batch
    order = list(
        make_loader(data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(4))
    )
    normalise = InputNormaliser.for_task(task, CPU.device)
    task.train()
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in order:
            out = task(normalise(batch["images"]), batch["targets"], batch["aux"])
            total += float(out["loss_main"]) * len(batch["targets"])
            n += len(batch["targets"])
    assert n == 20 and result.history[0]["loss_main"] == pytest.approx(total / n, rel=1e-5)


def test_a_checkpoint_for_other_targets_or_inputs_is_not_resumed(tmp_path: Path, caplog) -> None:
    """Failed before: the signature held the settings and sizes only, so a checkpoint
    trained on other targets (another transform, panel or gene list) was resumed."""
    data = _data()

    class Interrupted(Exception):
        pass

    def stop_after_two(epoch: int) -> None:
        if epoch == 2:
            raise Interrupted

    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        fit(_task(), data, data, CFG, CPU, checkpoint=checkpoint, on_epoch_end=stop_after_two)
    # the same spots with other targets (e.g. library-normalised instead of log1p)
    other = PatchBatches(data.patches, data.rows, data.targets * 0.5 + 1.0, data.aux)
    fresh = _task()
    expected = fit(fresh, other, other, CFG, CPU)
    resumed = _task()
    result = fit(resumed, other, other, CFG, CPU, checkpoint=checkpoint)
    assert "written with other settings; starting afresh (differs in: data)" in caplog.text
    assert [h["loss"] for h in result.history] == [h["loss"] for h in expected.history]
    for key, value in fresh.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    # and what the batches do not show (geometry, stain, model) comes in as a fingerprint
    caplog.clear()
    with pytest.raises(Interrupted):
        fit(_task(), data, None, CFG, CPU, checkpoint=checkpoint, on_epoch_end=stop_after_two)
    result = fit(_task(), data, None, CFG, CPU, checkpoint=checkpoint, fingerprint="other stain")
    assert "starting afresh (differs in: inputs)" in caplog.text
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
