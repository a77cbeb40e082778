"""Whole-slide prediction: a model trained on her2st patient C predicts section B4 as if
B4 had no ST data (the model comes from the real-data `training` run, tiny backbone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from PIL import Image

from brstnet.command import predict_command
from brstnet.inference.models import load_model
from brstnet.inference.slide import check_genes, predict_slide, slide_pixel_size
from brstnet.metrics import pearson_per_gene
from brstnet.st.errors import DataError
from brstnet.st.slides import open_slide
from brstnet.st.tissue import background_fractions, tissue_mask
from tests.layouts import her2st_tables, write_pyramid

PIXEL = 0.688


@pytest.fixture(scope="module")
def model(real_run: Path):
    bundle = load_model(real_run / "data/06_models/test_resnet_aux_ctx_fold0")
    assert bundle.config["train_patients"] == ["C"] and bundle.config["test_patients"] == ["B"]
    return bundle


@pytest.fixture(scope="module")
def b4(her2st_dir: Path):
    counts, spots, image = her2st_tables(her2st_dir, "B4")
    return counts, spots, image


@pytest.mark.real_data
def test_grid_covers_the_tissue_and_round_trips_through_scanpy(model, b4, tmp_path: Path) -> None:
    _, spots, image = b4
    result = predict_slide(model, image, pixel_size_um=PIXEL, pitch_um=200)
    assert result.n_vars == 250 and list(result.var_names) == model.config["genes"]
    grid = np.asarray(result.obsm["spatial"])
    # every B4 spot whose window is mostly tissue has a grid point within one pitch (291 px)
    spot_xy = spots[["pixel_x", "pixel_y"]].to_numpy()
    slide = open_slide(image, "B4")
    thumb, scale = slide.thumbnail()
    geometry = model.geometry
    background = background_fractions(
        tissue_mask(thumb), spot_xy, window=geometry.window_px(PIXEL), scale=scale
    )
    nearest = np.sqrt(((spot_xy[:, None, :] - grid[None, :, :]) ** 2).sum(-1)).min(axis=1)
    tissue = background <= geometry.max_background_fraction
    assert np.mean(nearest[tissue] < 200 / PIXEL) > 0.95
    assert np.mean(nearest < 200 / PIXEL) > 0.9  # the rest lie over fat or glass
    # ... and the grid stays on the tissue: not many more points than spots
    assert 0.5 * len(spots) < len(grid) < 2.0 * len(spots)
    # library targets (the default): the z-score undone is log(1 + reads per 10,000) ...
    assert model.config["target"]["transform"] == "library"
    assert np.allclose(
        result.layers["library"],
        result.X * np.asarray(model.config["target"]["std"])
        + np.asarray(model.config["target"]["mean"]),
        atol=1e-5,
    )
    # ... and the depth head's map turns it into counts on the training scale
    depth = result.obs["predicted_log_depth"].to_numpy(float)
    target = model.config["target"]
    assert np.isfinite(depth).all()
    assert np.abs(depth - target["depth_mean"]).max() < 6 * target["depth_std"]
    counts = np.expm1(np.maximum(result.layers["library"], 0)) * np.exp(depth)[:, None] / 1e4
    np.testing.assert_allclose(result.layers["log1p"], np.log1p(counts), rtol=1e-4, atol=1e-5)
    result.write_h5ad(tmp_path / "b4.h5ad")
    back = sc.read_h5ad(tmp_path / "b4.h5ad")
    assert back.shape == result.shape and back.uns["model"]["variant"] == "test_resnet_aux_ctx"
    np.testing.assert_allclose(back.obsm["spatial"], grid)


@pytest.mark.real_data
def test_predictions_at_the_real_spots_against_the_real_counts(model, b4) -> None:
    counts, spots, image = b4
    result = predict_slide(
        model, image, pixel_size_um=PIXEL, positions=spots[["pixel_x", "pixel_y"]].to_numpy()
    )
    genes = [g for g in result.var_names if g in counts.columns]
    observed = np.log1p(counts.loc[spots.index, genes].to_numpy())
    report = pd.DataFrame(
        {"gene": genes, "r": pearson_per_gene(observed, result[:, genes].layers["log1p"])}
    )
    assert len(report) >= 245  # the panel was chosen on patient C; nearly all genes exist in B4
    assert report["r"].notna().mean() > 0.95  # defined wherever B4 expresses the gene


@pytest.mark.real_data
def test_half_resolution_slide_gives_nearly_the_same_predictions(model, b4, tmp_path: Path) -> None:
    _, spots, image = b4
    positions = spots[["pixel_x", "pixel_y"]].to_numpy()
    full = predict_slide(model, image, pixel_size_um=PIXEL, positions=positions)
    half_path = tmp_path / "b4_half.png"
    Image.open(image).convert("RGB").reduce(2).save(half_path)
    half = predict_slide(model, half_path, pixel_size_um=2 * PIXEL, positions=positions / 2)
    a, b = full.X, half.X
    spread = a.std(axis=0).mean()
    assert np.abs(a - b).mean() < 0.35 * spread
    assert np.median(pearson_per_gene(a, b)) > 0.8


def test_tiff_slides_carry_their_pixel_size(tmp_path: Path) -> None:
    write_pyramid(tmp_path / "slide.tif", np.full((600, 800, 3), 200, np.uint8), 0.25)
    assert slide_pixel_size(tmp_path / "slide.tif", None) == pytest.approx(0.25)
    assert slide_pixel_size(tmp_path / "slide.tif", 0.5) == 0.5


@pytest.mark.real_data
def test_bad_inputs(model, b4, tmp_path: Path) -> None:
    _, _, image = b4
    with pytest.raises(DataError, match="its pixel size is not recorded in the file"):
        predict_slide(model, image)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"broken.jpg is corrupt or truncated"):
        predict_slide(model, broken, pixel_size_um=PIXEL)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (3000, 3000), (245, 245, 245)).save(blank)
    with pytest.raises(DataError, match="no tissue found"):
        predict_slide(model, blank, pixel_size_um=PIXEL)
    with pytest.raises(
        DataError, match=r"genes \['NOTAGENE'\] are not in the panel of model test_resnet_aux_ctx"
    ):
        check_genes(model, ["ERBB2", "NOTAGENE"])


@pytest.mark.real_data
def test_console_command(real_run: Path, b4, tmp_path: Path, capsys) -> None:
    _, _, image = b4
    model_dir = real_run / "data/06_models/test_resnet_aux_ctx_fold0"
    assert (
        predict_command(
            [
                str(image),
                "--model",
                str(model_dir),
                "--out",
                str(tmp_path / "out"),
                "--pixel-size",
                str(PIXEL),
                "--pitch-um",
                "400",
            ]
        )
        == 0
    )
    stem = Path(image).stem
    assert (tmp_path / "out" / f"{stem}.h5ad").is_file() and (
        tmp_path / "out" / f"{stem}_maps.png"
    ).stat().st_size > 10_000
    written = sc.read_h5ad(tmp_path / "out" / f"{stem}.h5ad")
    assert written.uns["pitch_um"] == 400
    # the depth map beside the gene maps: in the table and as the figure's first panel
    assert np.isfinite(written.obs["predicted_log_depth"]).all()
    assert {"library", "log1p"} <= set(written.layers)
    with pytest.raises(SystemExit) as exit_info:
        predict_command([str(image), "--model", str(model_dir), "--out", str(tmp_path / "out2")])
    assert exit_info.value.code == 2 and "pixel size is not recorded" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()  # nothing written on error


@pytest.mark.real_data
def test_inference_pipeline_logs_to_mlflow(real_run: Path, b4, monkeypatch) -> None:
    import yaml
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from mlflow.tracking import MlflowClient

    _, _, image = b4
    local = real_run / "conf/local/parameters_inference.yml"
    inference = {
        "model": "data/06_models/test_resnet_aux_ctx_fold0",
        "slides": {"B4": str(image)},
        "pixel_size_um": {"B4": PIXEL},
        "pitch_um": 400,
        "genes": ["ERBB2"],
    }
    local.write_text(yaml.safe_dump({"inference": inference}))
    monkeypatch.chdir(real_run)
    bootstrap_project(real_run)
    with KedroSession.create(project_path=real_run) as session:
        session.run(pipeline_name="inference")
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()
    result = sc.read_h5ad(real_run / "data/07_model_output/slides/B4.h5ad")
    assert (
        result.uns["model_source"] == "data/06_models/test_resnet_aux_ctx_fold0"
        and result.uns["pitch_um"] == 400
    )
    assert (real_run / "data/08_reporting/slides/B4_maps.png").is_file()
    client = MlflowClient(f"sqlite:///{real_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("brstnet")
    run = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`mlflow.runName` = 'inference'"
    )[0]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "slides")} == {
        "slides/B4.h5ad",
        "slides/B4_maps.png",
    }


# ---------------------------------------------------------------- bad input to the command


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """An untrained test_resnet bundle (3 genes, 32 px, 150 um) and a synthetic H&E JPEG."""
    from brstnet.models import ModelSpec
    from brstnet.st.geometry import PatchGeometry
    from brstnet.training.bundle import ModelBundle, bundle_config, save_bundle
    from tests.evaluation.folds import make_fold
    from tests.synthetic import synthetic_tissue

    tmp = tmp_path_factory.mktemp("cli")
    fold_input, _ = make_fold()
    fold_input.uns["zscore"] = True
    spec = ModelSpec("test_resnet", n_main=3, img_size=32)
    config = bundle_config(
        variant="test_resnet_noaux",
        fold=0,
        spec=spec,
        geometry=PatchGeometry(150.0, 32, 0.5, {"method": None}),
        fold_input=fold_input,
        aux_genes=[],
        train_patients=["A"],
        test_patients=["B"],
        training={},
    )
    save_bundle(ModelBundle(config, spec.build(seed=0).state_dict()), tmp / "model")
    rng = np.random.default_rng(0)
    Image.fromarray(synthetic_tissue(600, 800, (100, 100, 700, 500), rng)).save(tmp / "he.jpg")
    return tmp / "model", tmp / "he.jpg"


def _damaged_copy(model: Path, tmp_path: Path, damage) -> Path:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    damage(copy)
    return copy


def _truncate(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def _invalid_json(folder: Path) -> None:
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text[: len(text) // 2])


def _edit_config(change):
    def damage(folder: Path) -> None:
        import json

        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))

    return damage


def _more_genes(config: dict) -> None:  # the config of a model with another panel
    config["genes"] += ["ERBB2", "GRB7"]
    config["model"]["n_main"] = 5
    config["target"]["mean"] += [0.0, 0.0]
    config["target"]["std"] += [1.0, 1.0]


def _other_backbone(config: dict) -> None:
    config["model"]["backbone"] = "test_vit"


def _no_model_block(config: dict) -> None:
    del config["model"]


def _no_config(folder: Path) -> None:
    (folder / "config.json").unlink()


@pytest.mark.parametrize(
    ("damage", "names", "says"),
    [
        (_truncate, "model.safetensors", "is truncated or corrupt"),
        (_invalid_json, "config.json", "is not valid JSON"),
        (_edit_config(_more_genes), "config.json", "does not match model.safetensors"),
        (_edit_config(_other_backbone), "config.json", "does not match model.safetensors"),
        (_edit_config(_no_model_block), "config.json", "lacks"),
        (_no_config, "config.json", "is missing"),
    ],
    ids=["truncated", "invalid-json", "other-panel", "other-backbone", "no-model", "no-config"],
)
def test_a_damaged_model_is_a_one_line_error(
    tiny_bundle, tmp_path: Path, capsys, damage, names: str, says: str
) -> None:
    """Failed before: each of these ended in a raw traceback."""
    model, slide = tiny_bundle
    damaged = _damaged_copy(model, tmp_path, damage)
    argv = [str(slide), "--model", str(damaged), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        predict_command([*argv, "--pixel-size", "1.0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("brstnet predict: error: model ") and says in line
    assert str(damaged / names) in line
    assert "copy the model folder again" in line or "retrain" in line  # the fix
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("pitch", ["0", "-50"])
def test_a_pitch_that_is_not_positive_is_a_one_line_error(
    tiny_bundle, tmp_path: Path, capsys, pitch: str
) -> None:
    """Failed before: --pitch-um 0 divided by zero; a negative one found "no tissue"."""
    model, slide = tiny_bundle
    argv = [str(slide), "--model", str(model), "--out", str(tmp_path / "out"), "--pitch-um"]
    with pytest.raises(SystemExit) as exit_info:
        predict_command([*argv, pitch, "--pixel-size", "1.0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"brstnet predict: error: --pitch-um must be a positive number of micrometres, got "
        f"{float(pitch):g}: give the grid step, e.g. --pitch-um 200 (the ST spot pitch)"
    )
    with pytest.raises(DataError, match=r"pitch_um must be > 0 micrometres, got -50"):
        predict_slide(load_model(model), slide, pixel_size_um=1.0, pitch_um=-50)
    # and a good one predicts: the same model and slide are fine
    assert predict_command([*argv, "400", "--pixel-size", "1.0"]) == 0


def _unknown_backbone(config: dict) -> None:
    config["model"]["backbone"] = "resnet18_from_the_future"


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("out-is-a-file", "--out {out} is a file; give a folder"),
        ("out-under-a-file", "--out {out}/maps is under the file {out}; give a folder"),
        ("unknown-backbone", "names backbone 'resnet18_from_the_future', which this version"),
        ("cuda-without-gpu", "--device cuda: device 'cuda' was asked for but torch sees no GPU"),
        ("pixel-size-100", "a 150.0 um window is 2 px at 100 um/px, too few to show tissue"),
    ],
)
def test_predict_refuses_bad_arguments_in_one_line(
    tiny_bundle, tmp_path: Path, capsys, monkeypatch, case: str, says: str
) -> None:
    """Failed before: raw tracebacks (FileExistsError, NotADirectoryError, ValueError,
    RuntimeError), or, for a pixel size of 100 um, 9,876 batches of 1.5 px windows."""
    import torch

    model, slide = tiny_bundle
    out = tmp_path / "out"
    pixel_size, device = "1.0", "cpu"
    if case == "out-is-a-file":
        out.write_text("not a folder")
    elif case == "out-under-a-file":
        out.write_text("not a folder")
        out = out / "maps"
    elif case == "unknown-backbone":
        model = _damaged_copy(model, tmp_path, _edit_config(_unknown_backbone))
    elif case == "cuda-without-gpu":
        device = "cuda"
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU machine
    elif case == "pixel-size-100":
        pixel_size = "100"
    argv = [str(slide), "--model", str(model), "--out", str(out), "--pixel-size", pixel_size]
    with pytest.raises(SystemExit) as exit_info:
        predict_command([*argv, "--device", device])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("brstnet predict: error: ")
    assert says.format(out=tmp_path / "out") in line, line
