"""Epoch selection and the loop settings of one fold's training (no Kedro)."""

from __future__ import annotations

import math

from brstnet.config import PretrainingParams, TrainingParams
from brstnet.training.fold_inputs import FoldData
from brstnet.training.inner import select_epoch
from brstnet.training.loop import LoopConfig
from brstnet.training.params import Variant


def test_best_epoch_is_the_best_mean_over_inner_folds() -> None:
    # fold 1 peaks at epoch 1, fold 2 at epoch 3; the mean peaks at epoch 2
    curves = [[0.50, 0.45, 0.10], [0.10, 0.30, 0.40]]
    epoch, r = select_epoch(curves, default=3)
    assert epoch == 2 and math.isclose(r, 0.375)


def test_nan_epochs_are_skipped_and_no_validation_gives_the_default() -> None:
    assert select_epoch([[float("nan"), 0.2, 0.1]], default=3)[0] == 2
    epoch, r = select_epoch([[float("nan")] * 3], default=3)
    assert epoch == 3 and math.isnan(r)
    assert select_epoch([], default=7)[0] == 7


def test_loop_config_takes_the_training_parameters_under_their_own_names() -> None:
    cfg = TrainingParams(
        backbones=["test_resnet"],
        lr=0.02,
        batch_size=4,
        optimizer="adamw",
        lr_reference_batch=8,
        stain_jitter=0.2,
        resolution_jitter_um=4.0,
        blur_sigma_um=1.5,
        color_jitter=0.1,
        dihedral=False,
    )
    loop = LoopConfig.from_params(cfg, epochs=5, um_per_px=1.34)
    assert (loop.epochs, loop.lr, loop.batch_size, loop.optimizer) == (5, 0.02, 4, "adamw")
    assert (loop.lr_reference_batch, loop.color_jitter, loop.dihedral) == (8, 0.1, False)
    assert loop.scanner.stain_jitter == 0.2 and loop.scanner.resolution_jitter_um == 4.0
    assert (loop.scanner.blur_sigma_um, loop.scanner.um_per_px) == (1.5, 1.34)
    # every loop setting but the per-fit ones is a model_training parameter of the same name
    own = {f for f in LoopConfig.__dataclass_fields__} - {"epochs", "um_per_px"}
    assert own <= set(TrainingParams.model_fields)


def test_loop_config_from_the_pretraining_parameters_keeps_the_loop_defaults_elsewhere() -> None:
    pre = PretrainingParams(lr=0.005, batch_size=16, optimizer="sgd", momentum=0.5, seed=3)
    loop = LoopConfig.from_params(pre, epochs=2)
    assert (loop.lr, loop.batch_size, loop.optimizer, loop.momentum, loop.seed) == (
        0.005,
        16,
        "sgd",
        0.5,
        3,
    )
    assert loop.lr_scaling == "none" and loop.scaled_lr == 0.005  # not a pretraining setting


def _fold_job(tmp_path, stain: dict | None = None):
    """A tiny fold (tests.evaluation.folds) with 32 px patches and its training inputs."""
    import numpy as np
    import pandas as pd

    from brstnet.st.geometry import PatchGeometry
    from tests.evaluation.folds import make_fold

    fold_input, patches = make_fold(n_train=10, n_test=4)
    fold_input.obs["section"] = ["A1"] * 5 + ["A2"] * 5 + ["B1"] * 4
    fold_input.uns["aux_genes"] = ["X1"]
    fold_input.uns["zscore"] = True
    patches = np.repeat(np.repeat(patches, 4, axis=1), 4, axis=2)  # 32 px
    splits = pd.DataFrame(
        {
            "fold": 0,
            "inner_fold": [-1, -1, -1, 0, 0],
            "role": ["train", "train", "test", "train", "val"],
            "section": ["A1", "A2", "B1", "A1", "A2"],
            "patient": ["A", "A", "B", "A", "A"],
        }
    )
    geometry = PatchGeometry(150.0, 32, 0.5, stain or {"method": None})
    cfg = TrainingParams(
        backbones=["test_resnet"],
        epochs=2,
        batch_size=5,  # one batch per inner epoch: BatchNorm needs more than one sample
        optimizer="adamw",
        lr=1e-3,
        final="best_checkpoint",
        device="cpu",
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    return fold_input, splits, patches, geometry, cfg


class _Killed(Exception):
    pass


def _kill_after_first_epoch(monkeypatch) -> None:
    """The next fit stops after its first epoch (as a kill would, with its checkpoint)."""
    from brstnet.training import folds

    real_fit = folds.fit

    def killed(*args, **kwargs):
        def stop(epoch: int) -> None:
            raise _Killed

        return real_fit(*args, **kwargs, on_epoch_end=stop)

    monkeypatch.setattr(folds, "fit", killed)


def test_a_checkpoint_from_another_geometry_is_not_resumed(tmp_path, monkeypatch, caplog) -> None:
    """Failed before: a fold's checkpoint was resumed after the stain reference (or window,
    panel, transform...) changed, continuing weights trained on other inputs."""
    import pytest
    import torch

    from brstnet.training.folds import train_fold

    fold_input, splits, patches, geometry, cfg = _fold_job(tmp_path)
    _kill_after_first_epoch(monkeypatch)
    with pytest.raises(_Killed):
        train_fold(
            FoldData(fold_input, patches, geometry, 0),
            splits,
            cfg,
            Variant("test_resnet_aux", "test_resnet", 1.0),
        )
    monkeypatch.undo()
    assert list((tmp_path / "ckpt" / "test_resnet_aux_fold0").glob("*.pt"))
    stained = {"method": "macenko", "stain_matrix": [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]]}
    other = geometry.__class__(150.0, 32, 0.5, stained)
    resumed, _ = train_fold(
        FoldData(fold_input, patches, other, 0),
        splits,
        cfg,
        Variant("test_resnet_aux", "test_resnet", 1.0),
    )
    assert "starting afresh (differs in: inputs)" in caplog.text
    fresh, _ = train_fold(
        FoldData(fold_input, patches, other, 0),
        splits,
        cfg.model_copy(update={"checkpoint_dir": str(tmp_path / "fresh")}),
        Variant("test_resnet_aux", "test_resnet", 1.0),
    )
    for key, value in fresh.state_dict.items():
        assert torch.equal(resumed.state_dict[key], value), key


def test_checkpoints_outlive_the_fold_until_its_bundle_is_saved(tmp_path, caplog) -> None:
    """Failed before: train_fold deleted its checkpoints before Kedro saved the bundle, so a
    kill in between retrained the whole fold."""
    import logging

    import torch

    from brstnet.training.bundle import load_bundle, save_bundle
    from brstnet.training.folds import train_fold

    fold_input, splits, patches, geometry, cfg = _fold_job(tmp_path)
    data, variant = (
        FoldData(fold_input, patches, geometry, 0),
        Variant("test_resnet_aux", "test_resnet", 1.0),
    )
    bundle, history = train_fold(data, splits, cfg, variant)
    checkpoints = tmp_path / "ckpt" / "test_resnet_aux_fold0"
    assert [p.name for p in checkpoints.glob("*.pt")] == ["inner0.pt"]
    # killed before the bundle was written: the rerun resumes from the finished checkpoint
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again, history_again = train_fold(data, splits, cfg, variant)
    assert "test_resnet_aux fold 0 inner0: resuming from" in caplog.text
    assert "epoch 1/2" not in caplog.text  # nothing retrained
    assert history_again.equals(history)
    for key, value in bundle.state_dict.items():
        assert torch.equal(again.state_dict[key], value), key
    save_bundle(again, tmp_path / "models" / "test_resnet_aux_fold0")
    assert not checkpoints.exists()  # removed once the bundle is safely written
    saved = load_bundle(tmp_path / "models" / "test_resnet_aux_fold0").config
    assert saved == again.config

    def settings(config: dict) -> dict:  # when it trained differs; what it trained does not
        span = ("started_at", "ended_at", "train_seconds")
        return {
            **config,
            "training": {k: v for k, v in config["training"].items() if k not in span},
        }

    assert settings(saved) == settings(bundle.config)
    assert bundle.config["training"]["started_at"] < again.config["training"]["started_at"]


def test_a_context_variant_trains_and_predicts_its_held_out_fold(tmp_path) -> None:
    """train_fold with spatial context: the bundle's spec says so, the inner validation and
    the held-out prediction read each spot's neighbours among its own set's spots."""
    import numpy as np

    from brstnet.evaluation.predictions import predict_fold
    from brstnet.training.fold_inputs import fold_neighbours
    from brstnet.training.folds import train_fold

    fold_input, splits, patches, geometry, cfg = _fold_job(tmp_path)
    # the spots on a square grid per section (make_fold lays them on one row)
    fold_input.obsm["spatial"] = np.array([(100.0 * (i % 5), 100.0 * (i // 5)) for i in range(14)])
    bundle, history = train_fold(
        FoldData(fold_input, patches, geometry, 0),
        splits,
        cfg,
        Variant("test_resnet_aux_ctx", "test_resnet", 1.0, context=True),
    )
    assert bundle.spec.context and bundle.spec.predicts_depth
    assert np.isfinite(history["val_mean_r"]).all() and np.isfinite(history["val_depth_r"]).all()
    held_out = np.arange(10, 13)  # B1's spots with a patch
    neighbours, sections = fold_neighbours(fold_input, held_out)
    assert set(sections) == {"B1"} and (neighbours < len(held_out)).all()
    predictions = predict_fold(bundle, fold_input, patches, batch_size=2, tta=False, device="cpu")
    assert predictions.n_obs == 3 and np.isfinite(predictions.X).all()
    assert np.isfinite(predictions.obs["predicted_log_depth"]).all()
