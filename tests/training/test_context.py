"""The spatial-context model: it reads its spots' grid neighbours and section, trains in
the same loop (resumable), and predicts the same numbers whatever the batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brstnet.models import ModelSpec
from brstnet.st.neighbours import spot_neighbours
from brstnet.training.context import predict_from_embeddings
from brstnet.training.data import PatchBatches
from brstnet.training.devices import resolve_device
from brstnet.training.loop import LoopConfig, fit, predict

CPU = resolve_device("cpu")
SPEC = ModelSpec(
    "test_resnet", n_main=4, img_size=32, n_aux=3, aux_weight=1.0, depth_weight=1.0, context=True
)
CFG = LoopConfig(epochs=3, batch_size=8, optimizer="adamw", lr=3e-3, scheduler="constant", seed=1)


def _grid_data(seed: int = 0) -> PatchBatches:
    """Two 4 x 5 square-grid sections; targets are the mean brightness of a spot's
    3 x 3 neighbourhood, which the spot's own patch does not tell."""
    rng = np.random.default_rng(seed)
    xy = np.array([(x * 200.0, y * 200.0) for y in range(4) for x in range(5)])
    xy, sections = np.r_[xy, xy], np.array(["A1"] * 20 + ["A2"] * 20)
    neighbours = spot_neighbours(xy, sections)
    brightness = rng.uniform(30, 220, len(xy))
    patches = np.repeat(brightness[:, None, None, None], 32 * 32 * 3).reshape(-1, 32, 32, 3)
    around = np.array([brightness[n[n >= 0]].mean() if (n >= 0).any() else 0.0 for n in neighbours])
    targets = np.c_[around, -around, around**2 / 100, brightness].astype(np.float32)
    targets = (targets - targets.mean(0)) / targets.std(0)
    aux = rng.normal(size=(len(xy), 3)).astype(np.float32)
    depth = rng.normal(size=len(xy)).astype(np.float32)
    return PatchBatches(
        patches.astype(np.uint8),
        np.arange(len(xy)),
        targets,
        aux,
        depth_targets=depth,
        neighbours=neighbours,
        groups=sections,
    )


def test_a_spot_reads_its_neighbours_and_section_and_nothing_else() -> None:
    task = SPEC.build(seed=0)
    data = _grid_data()
    rng = np.random.default_rng(1)
    width = task.model.head.in_features // 3  # own, neighbourhood, section
    embeddings = rng.normal(size=(len(data), width)).astype(np.float32)
    base, depth = predict_from_embeddings(task, embeddings, data.neighbours, data.groups, CPU)
    assert base.shape == (40, 4) and depth.shape == (40,) and np.isfinite(depth).all()
    spot = 6  # section A1, (1, 1): an interior spot
    neighbour = int(data.neighbours[spot][0])
    for other, changes in ((neighbour, True), (25, False)):  # 25: the other section
        moved = embeddings.copy()
        moved[other] += 3.0
        out, _ = predict_from_embeddings(task, moved, data.neighbours, data.groups, CPU)
        assert (not np.allclose(out[spot], base[spot], atol=1e-6)) is changes
    # a spot without neighbours still gets a finite prediction (its own and its section's)
    alone = np.full_like(data.neighbours, -1)
    out, _ = predict_from_embeddings(task, embeddings, alone, data.groups, CPU)
    assert np.isfinite(out).all()
    # a context model fed no neighbours at all is an error, not a silent guess
    with pytest.raises(ValueError, match="needs its spots' neighbours"):
        task.eval()(torch.zeros(2, 3, 32, 32))


def test_it_trains_in_the_loop_resumes_and_predicts_whatever_the_batch(tmp_path: Path) -> None:
    data = _grid_data()
    straight = SPEC.build(seed=0)
    result = fit(straight, data, data, CFG, CPU)
    assert all(
        np.isfinite(h["loss_depth"]) and np.isfinite(h["val_mean_r"]) for h in result.history
    )

    class Interrupted(Exception):
        pass

    def stop(epoch: int) -> None:
        if epoch == 2:
            raise Interrupted

    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        fit(SPEC.build(seed=0), data, data, CFG, CPU, checkpoint=checkpoint, on_epoch_end=stop)
    resumed = SPEC.build(seed=5)
    fit(resumed, data, data, CFG, CPU, checkpoint=checkpoint)
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key

    a, da = predict(straight, data, CPU, batch_size=3, depth=True)
    b, db = predict(straight, data, CPU, batch_size=64, depth=True)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(da, db, atol=1e-5)
    # without the spots' positions, a context model's prediction is refused
    with pytest.raises(ValueError, match="no spot positions"):
        predict(straight, PatchBatches(data.patches, data.rows), CPU)
