"""Held-out positions, the predictions AnnData and predict_fold's wiring (no Kedro)."""

from __future__ import annotations

import numpy as np
import pytest

from brstnet.evaluation.predictions import check_panel, predict_fold, predictions_anndata
from brstnet.features.rows import held_out_rows
from tests.evaluation.folds import make_fold


def test_held_out_rows_are_the_test_spots_with_a_patch() -> None:
    # the evaluation predicts these (the fold's layout is what the other tests rely on)
    fold_input, _ = make_fold(n_train=8, n_test=5)
    # spots 8..12 are held out; 12 has no patch; 7 is off the tissue but a training spot
    np.testing.assert_array_equal(held_out_rows(fold_input), [8, 9, 10, 11])
    fold_input.obs.loc["s9", "passes_tissue"] = False  # the tissue check filters training only
    np.testing.assert_array_equal(held_out_rows(fold_input), [8, 9, 10, 11])


def test_predictions_carry_observed_and_target_scale_layers() -> None:
    fold_input, _ = make_fold(("G1", "G2"), n_train=4, n_test=3)
    positions = np.array([4, 6])
    predicted = np.array([[0.0, 1.0], [-1.0, 2.0]])
    out = predictions_anndata(fold_input, positions, predicted, variant="v", fold=3)

    assert out.shape == (2, 2) and list(out.var_names) == ["G1", "G2"]
    assert out.X.dtype == np.float32 and list(out.obs_names) == ["s4", "s6"]
    np.testing.assert_array_equal(out.layers["observed"], fold_input.X[positions])
    mean = fold_input.var["target_mean"].to_numpy()
    std = fold_input.var["target_std"].to_numpy()
    # z = (log1p(count) - mean) / std, so target scale = z * std + mean
    np.testing.assert_allclose(out.layers["predicted_target_scale"], predicted * std + mean)
    np.testing.assert_allclose(
        out.layers["observed_target_scale"],
        np.log1p(fold_input.layers["counts"][positions]),
        rtol=1e-5,
    )
    # a prediction of 0 is the training mean of the gene
    np.testing.assert_allclose(out.layers["predicted_target_scale"][0, 0], mean[0], rtol=1e-6)
    np.testing.assert_array_equal(
        out.layers["observed_counts"], fold_input.layers["counts"][positions]
    )
    np.testing.assert_array_equal(out.obsm["spatial"], fold_input.obsm["spatial"][positions])
    assert dict(out.uns) == {
        "variant": "v",
        "fold": 3,
        "transform": "log1p",
        "smoothing": "none",
        "scale": "X: z-scored target scale",
    }


def test_check_panel_names_the_model() -> None:
    fold_input, _ = make_fold(("G1", "G2"))
    check_panel({"genes": ["G1", "G2"], "variant": "m", "fold": 0}, fold_input)
    with pytest.raises(ValueError, match="model m fold 1 was trained on another gene panel"):
        check_panel({"genes": ["G2", "G1"], "variant": "m", "fold": 1}, fold_input)


class _Bundle:
    """A stand-in model bundle: its task is never called (``predict`` is replaced)."""

    def __init__(self, genes: list[str]) -> None:
        from types import SimpleNamespace

        self.config = {"genes": genes, "variant": "m", "fold": 0}
        self.spec = SimpleNamespace(context=False)
        self.built = 0

    def build_task(self):
        import torch

        self.built += 1
        return torch.nn.Identity()


def test_predict_fold_predicts_the_held_out_patches(monkeypatch) -> None:
    import brstnet.training.loop

    fold_input, patches = make_fold(("G1", "G2"), n_train=4, n_test=4)
    calls = {}

    def fake_predict(task, data, setup, *, batch_size, tta, depth):
        calls.update(rows=data.rows, device=setup.device.type, batch_size=batch_size, tta=tta)
        # "predicts" each patch's brightness and its negative, and a depth z-score of 1
        value = patches[data.rows, 0, 0, 0].astype(np.float32)
        assert depth
        return np.c_[value, -value], np.ones(len(value), np.float32)

    monkeypatch.setattr(brstnet.training.loop, "predict", fake_predict)
    bundle = _Bundle(["G1", "G2"])
    bundle.config["target"] = {"depth_mean": 7.0, "depth_std": 0.5}
    out = predict_fold(bundle, fold_input, patches, batch_size=5, tta=True, device="cpu")

    positions = [4, 5, 6]  # the last held-out spot has no patch
    rows = fold_input.obs["patch_row"].to_numpy()[positions]
    np.testing.assert_array_equal(calls["rows"], rows)
    assert (calls["device"], calls["batch_size"], calls["tta"]) == ("cpu", 5, True)
    assert bundle.built == 1
    np.testing.assert_array_equal(out.X[:, 0], patches[rows, 0, 0, 0])
    np.testing.assert_array_equal(out.layers["observed"], fold_input.X[positions])
    assert out.uns["variant"] == "m" and out.uns["fold"] == 0
    # the depth head's z-score 1, in log read depth with the bundle's training statistics
    np.testing.assert_allclose(out.obs["predicted_log_depth"], 7.5)
    # log1p targets: the library-normalised prediction is the count per 10,000 reads
    counts = np.expm1(np.maximum(out.layers["predicted_target_scale"], 0))  # < 0: no reads
    np.testing.assert_allclose(
        out.layers["predicted_library"], np.log1p(counts * 1e4 / np.exp(7.5)), rtol=1e-5
    )
    np.testing.assert_allclose(out.layers["predicted_log1p"], out.layers["predicted_target_scale"])


def test_predict_fold_refuses_another_panel() -> None:
    fold_input, patches = make_fold(("G1", "G2"))
    bundle = _Bundle(["G1", "G3"])
    with pytest.raises(ValueError, match="another gene panel"):
        predict_fold(bundle, fold_input, patches, batch_size=4, tta=False, device="cpu")
    assert bundle.built == 0  # checked before the model is built
