"""Epoch selection and the loop settings of one fold's training (no Kedro)."""

from __future__ import annotations

import math

from brstnet.config import TrainingParams
from brstnet.training.folds import loop_config, select_epoch


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


def test_loop_config_takes_the_training_parameters() -> None:
    cfg = TrainingParams(backbones=["test_resnet"], lr=0.02, batch_size=4, optimizer="adamw")
    loop = loop_config(cfg, epochs=5)
    assert (loop.epochs, loop.lr, loop.batch_size, loop.optimizer) == (5, 0.02, 4, "adamw")
