"""model_training: one variant end to end on tiny synthetic sections with SequentialRunner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from kedro.runner import SequentialRunner

from brstnet.pipelines import data_processing, feature_selection, model_training
from brstnet.pipelines.variants import n_folds, variant_grid
from brstnet.training.bundle import load_bundle
from tests.conftest import REPO, dp_params, project_catalog, write_section


def _params(name: str) -> dict:
    return yaml.safe_load((REPO / f"conf/base/parameters_{name}.yml").read_text())[name]


@pytest.fixture
def three_sections(tmp_path: Path) -> Path:
    root = tmp_path / "her2st"
    for seed, section in enumerate(("A1", "A2", "B1")):
        write_section(root, section, seed=seed, n_x=5, n_y=4)
    return root


def test_one_variant_on_tiny_data(three_sections: Path, tmp_path: Path) -> None:
    dp = dp_params(
        sections=["A1", "A2", "B1"],
        qc={"min_total_reads": 0},
        stain={"reference_section": None},
        patches={"window_um": 150, "size_px": 32},
    )
    fs = _params("feature_selection")
    fs["panel"] = {**fs["panel"], "n_genes": 3}
    mt = _params("model_training")
    mt.update(
        epochs=2,
        batch_size=8,
        backbones=["test_resnet"],
        aux_weights=[1.0],
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    variants, folds = variant_grid(
        {"data_processing": dp, "feature_selection": fs, "model_training": mt}
    )
    assert variants == [("test_resnet_aux", "test_resnet", 1.0)] and folds == 2

    catalog = project_catalog(tmp_path / "project")
    catalog["params:data_processing"] = dp
    catalog["params:feature_selection"] = fs
    catalog["params:model_training"] = mt
    catalog["raw_manifest"] = {"root": str(three_sections)}
    pipeline = (
        data_processing.create_pipeline().from_nodes("read_sections")
        + feature_selection.create_pipeline()
        + model_training.create_pipeline(variants=variants, n_folds=folds)
    )
    SequentialRunner().run(pipeline, catalog)

    # fold 0 holds out A: trains on B1 alone, no inner split; fold 1 holds out B: trains
    # on A1 + A2 with an inner split by section, then keeps the best inner epoch
    history0 = catalog.load("test_resnet_aux_fold0.training_history")
    assert history0["stage"].tolist() == ["final", "final"]
    history1 = catalog.load("test_resnet_aux_fold1.training_history")
    assert history1["stage"].tolist() == ["inner0", "inner0"]
    assert np.isfinite(history1["val_mean_r"]).all()

    bundle = load_bundle(tmp_path / "project/data/06_models/test_resnet_aux_fold1")
    cfg = bundle.config
    assert (
        cfg["backbone"] == "test_resnet"
        and cfg["test_patients"] == ["B"]
        and cfg["train_patients"] == ["A"]
    )
    assert len(cfg["genes"]) == 3 and len(cfg["aux_genes"]) == 2 and cfg["size_px"] == 32
    assert cfg["training"]["best_epoch"] in (1, 2) and cfg["stain_reference"]["method"] == "macenko"
    task = bundle.build_task()
    assert task.model.aux_head is not None and task.model.aux_head.out_features == 2
    assert not list(
        (tmp_path / "ckpt").rglob("*.pt")
    )  # checkpoints removed once the bundle is saved


def test_fold_count_follows_the_split_settings() -> None:
    dp = {"dataset": "her2st", "sections": ["B4", "C2", "C3", "E1"]}
    assert n_folds(dp, {"split": {"scheme": "lopo"}}) == 3
    assert n_folds(dp, {"split": {"scheme": "kfold", "k": 2}}) == 2
    assert n_folds(dp, {"split": {"scheme": "fixed", "test_patients": ["B"]}}) == 1


def test_default_and_brstnet_configurations(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    variants, folds = variant_grid()
    assert [v[0] for v in variants] == ["resnet18_aux", "resnet18_noaux"] and folds == 2
    monkeypatch.setenv("KEDRO_ENV", "brstnet")
    variants, _ = variant_grid()
    assert len(variants) == 20 and {v[2] for v in variants} == {0.0, 1.0}
    assert "vit_base_patch32_aux" in [v[0] for v in variants]
