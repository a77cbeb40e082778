"""Settings are chosen on the inner validation split: its figures, the ridge on the same
split and the selection table (no Kedro, tiny synthetic folds)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from brstnet.evaluation.selection import (
    Candidate,
    inner_folds,
    score_candidate,
    score_ridge,
    selection_table,
)
from brstnet.metrics import partial_pearson_per_gene, pearson_per_gene
from brstnet.training.fold_inputs import FoldData
from brstnet.training.inner import inner_validation
from brstnet.training.params import Variant
from tests.training.test_folds import _fold_job


def test_inner_validation_averages_the_inner_folds_at_the_chosen_epoch() -> None:
    history = pd.DataFrame(
        {
            "stage": ["inner0", "inner0", "inner1", "inner1", "final", "final"],
            "epoch": [1, 2, 1, 2, 1, 2],
            "val_mean_r": [0.1, 0.3, 0.2, 0.5, np.nan, np.nan],
            "val_median_r": [0.0, 0.2, 0.1, 0.4, np.nan, np.nan],
            "val_median_partial_r": [0.0, 0.05, 0.0, 0.15, np.nan, np.nan],
        }
    )
    figures = inner_validation(history, epoch=2)
    assert figures == pytest.approx(
        {"inner_val_mean_r": 0.4, "inner_val_median_r": 0.3, "inner_val_median_partial_r": 0.1}
    )
    # no inner split (one training section): nothing to choose settings by
    assert all(math.isnan(v) for v in inner_validation(history[4:], epoch=2).values())
    assert all(math.isnan(v) for v in inner_validation([], epoch=1).values())


def test_training_records_the_inner_validation_in_history_and_bundle(tmp_path) -> None:
    from brstnet.training.folds import train_fold

    fold_input, splits, patches, geometry, cfg = _fold_job(tmp_path)
    bundle, history = train_fold(
        FoldData(fold_input, patches, geometry, 0),
        splits,
        cfg,
        Variant("test_resnet_aux", "test_resnet", 1.0),
    )
    inner = history[history["stage"] == "inner0"]
    assert {"val_median_r", "val_median_partial_r"} <= set(inner.columns)
    assert inner["val_median_r"].notna().all()
    training = bundle.config["training"]
    chosen = inner[inner["epoch"] == training["best_epoch"]].iloc[0]
    assert training["inner_val_median_r"] == pytest.approx(chosen["val_median_r"])
    assert training["inner_val_median_partial_r"] == pytest.approx(chosen["val_median_partial_r"])


def test_validation_partial_r_is_given_the_spots_read_depth() -> None:
    """The loop's validation figures against the metrics module on the same predictions."""
    import torch

    from brstnet.training.data import PatchBatches
    from brstnet.training.devices import resolve_device
    from brstnet.training.loop import FitResult, _validate
    from brstnet.training.predict import predict_loader, prediction_loader

    rng = np.random.default_rng(0)
    n, genes = 24, 4
    patches = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    targets = rng.normal(size=(n, genes)).astype(np.float32)
    depth = rng.normal(8, 0.5, n)
    val = PatchBatches(patches, np.arange(n), targets, log_depth=depth)
    from brstnet.models import ModelSpec

    task = ModelSpec.for_backbone("test_resnet", n_main=genes, img_size=8).build(seed=0)
    setup = resolve_device("cpu")
    loader = prediction_loader(val, setup, batch_size=8)
    record: dict = {}
    _validate(task, loader, val, setup, record, FitResult(), epoch=0)
    with torch.no_grad():
        pred = predict_loader(task, loader, setup)
    assert record["val_median_r"] == pytest.approx(np.nanmedian(pearson_per_gene(targets, pred)))
    assert record["val_median_partial_r"] == pytest.approx(
        np.nanmedian(partial_pearson_per_gene(targets, pred, depth))
    )
    record = {}
    _validate(
        task,
        loader,
        PatchBatches(patches, np.arange(n), targets),
        setup,
        record,
        FitResult(),
        epoch=0,
    )
    assert "val_median_partial_r" not in record  # no depth, no partial r


def test_ridge_is_scored_on_the_inner_split_only(tmp_path) -> None:
    fold_input, splits, patches, _, _ = _fold_job(tmp_path)
    assert inner_folds(splits) == [0]
    rows = score_ridge({0: fold_input}, splits, patches)
    assert len(rows) == 1 and rows[0]["candidate"] == "baseline_ridge"
    # the held-out section B1 never enters: changing its targets changes nothing
    changed = fold_input.copy()
    test = (changed.obs["role"] == "test").to_numpy()
    changed.X[test] = np.random.default_rng(1).normal(size=changed.X[test].shape)
    assert score_ridge({0: changed}, splits, patches) == rows
    # G1 follows the patch brightness, so the ridge predicts it on the validation section
    assert rows[0]["inner_val_mean_r"] > 0


def test_a_candidate_is_trained_on_inner_folds_and_ranked_against_the_ridge(tmp_path) -> None:
    fold_input, splits, patches, geometry, cfg = _fold_job(tmp_path)
    training = cfg.model_dump()
    rows = score_ridge({0: fold_input}, splits, patches)
    for candidate in (
        Candidate("slow", "test_resnet", 1.0, {"lr": 1e-6}),
        Candidate("fast", "test_resnet", 0.0, {"lr": 1e-2}),
    ):
        rows += score_candidate(
            candidate,
            {0: fold_input},
            splits,
            patches,
            geometry,
            training,
            checkpoint_dir=tmp_path / "selection",
        )
    assert (tmp_path / "selection" / "fast" / "fast_fold0" / "inner0.pt").is_file()
    table = selection_table(rows)
    assert set(table["candidate"]) == {"baseline_ridge", "slow", "fast"}
    assert list(table["inner_val_median_r"]) == sorted(table["inner_val_median_r"], reverse=True)
    ridge = table.set_index("candidate").loc["baseline_ridge"]
    assert ridge["median_r_over_ridge"] == 0
    fast = table.set_index("candidate").loc["fast"]
    assert fast["median_r_over_ridge"] == pytest.approx(
        fast["inner_val_median_r"] - ridge["inner_val_median_r"]
    )
    assert (table["folds"] == "0").all()


def test_a_candidate_with_unknown_keys_is_refused() -> None:
    assert Candidate.from_dict({"name": "a", "overrides": {"lr": 0.1}}).overrides == {"lr": 0.1}
    with pytest.raises(ValueError, match="candidate has keys"):
        Candidate.from_dict({"name": "a", "lr": 0.1})


def _window_store(patches: np.ndarray, sections: list[str], geometry):
    from brstnet.st.patch_store import PatchStore

    index = pd.DataFrame({"section": sections, "row": np.arange(len(sections))})
    return PatchStore(patches, index, geometry.to_dict())


#: A short SimCLR run on the tiny test backbone.
PRETRAINING = {
    "backbone": "test_resnet",
    "epochs": 1,
    "batch_size": 4,
    "projection_hidden": 16,
    "projection_dim": 8,
    "device": "cpu",
}


def test_a_pretraining_candidate_starts_from_an_encoder_of_its_inner_training_slides(
    tmp_path,
) -> None:
    from brstnet.pretraining.train import pretrain_sections
    from brstnet.pretraining.weights import load_trunk

    fold_input, splits, patches, geometry, cfg = _fold_job(tmp_path)
    # the tissue windows: the spots' patches of each section (the store has two spare rows)
    rows = fold_input.obs["patch_row"].to_numpy()
    windows = _window_store(patches[rows], list(fold_input.obs["section"]), geometry)
    asked, files = [], []

    def encoder(sections, out_dir):
        asked.append(sections)
        files.append(pretrain_sections(windows, sections, PRETRAINING, out_dir))
        return files[-1]

    def score(candidate, **kw):
        return score_candidate(
            candidate,
            {0: fold_input},
            splits,
            patches,
            geometry,
            cfg.model_dump(),
            checkpoint_dir=tmp_path / "selection",
            **kw,
        )

    with pytest.raises(ValueError, match="pretrains: give pretrain_encoder"):
        score(Candidate("ssl", "test_resnet", pretrain=True))
    ssl = score(Candidate("ssl", "test_resnet", pretrain=True), pretrain_encoder=encoder)
    # the inner split trains on A1 and validates on A2: the encoder sees A1's windows only
    assert asked == [["A1"]]
    assert load_trunk(files[0]).metadata == {
        "backbone": "test_resnet",
        "sections": ["A1"],
        "windows": 5,
    }
    plain = score(Candidate("plain", "test_resnet"))
    assert ssl[0]["inner_val_mean_r"] != plain[0]["inner_val_mean_r"]  # other start, other fit
    # the same request reuses the encoder; another section set is another encoder
    stamp = files[0].stat().st_mtime_ns
    assert (
        pretrain_sections(windows, ["A1"], PRETRAINING, tmp_path / "selection/pretrained")
        == (files[0])
    )
    assert files[0].stat().st_mtime_ns == stamp
    other = pretrain_sections(windows, ["A2"], PRETRAINING, tmp_path / "selection/pretrained")
    assert other != files[0] and other.is_file()


def test_a_candidate_reads_pretrain_from_yaml() -> None:
    assert Candidate.from_dict({"name": "a", "pretrain": True, "context": True}).pretrain
    assert not Candidate.from_dict({"name": "a"}).pretrain
