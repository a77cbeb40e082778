"""Inference cuts, filters and normalises exactly as training did, from the bundle alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brstnet.inference.slide import predict_slide
from brstnet.models import ModelSpec
from brstnet.st.cutting import extract_section
from brstnet.st.geometry import PatchGeometry
from brstnet.st.her2st import locate_section, read_section
from brstnet.st.slides import open_slide
from brstnet.st.stain import fit_macenko
from brstnet.training.bundle import ModelBundle, load_bundle, save_bundle
from tests.synthetic import write_section


@pytest.fixture
def section(tmp_path: Path):
    root = tmp_path / "her2st"
    write_section(root, "A1", seed=3, n_x=5, n_y=4, image_size=(1100, 900))
    return read_section(locate_section(root, "A1"))


def _geometry(adata, *, threshold: float = 0.5) -> PatchGeometry:
    image = open_slide(adata.uns["image_path"], "A1")
    x, y = np.median(adata.obsm["spatial"], axis=0)
    return PatchGeometry(
        window_um=150.0,
        size_px=24,
        max_background_fraction=threshold,
        stain_reference=fit_macenko(image.crop(x, y, 300)),
    )


def _bundle(geometry: PatchGeometry, **spec_args) -> ModelBundle:
    spec = ModelSpec("test_resnet", n_main=2, img_size=geometry.size_px, **spec_args)
    task = spec.build(seed=0)
    config = {
        "variant": "test_resnet_noaux",
        "fold": 0,
        "model": spec.to_dict(),
        "geometry": geometry.to_dict(),
        "genes": ["ERBB2", "GRB7"],
        "aux_genes": [],
        "target": {"transform": "log1p", "zscore": True, "mean": [0.0, 0.0], "std": [1.0, 1.0]},
        "train_patients": ["B"],
        "test_patients": ["A"],
    }
    return ModelBundle(config, task.state_dict())


def _captured(monkeypatch) -> list[np.ndarray]:
    """The uint8 batches predict_slide hands to the model."""
    from brstnet.inference import slide

    seen: list[np.ndarray] = []
    real = slide.predict_images

    def spy(task, batches, setup, *, tta=False, depth=False):
        kept = [np.asarray(b).copy() for b in batches]
        seen.extend(kept)
        return real(task, kept, setup, tta=tta, depth=depth)

    monkeypatch.setattr(slide, "predict_images", spy)
    return seen


def test_a_spot_is_cut_identically_for_the_store_and_for_a_slide(section, monkeypatch) -> None:
    geometry = _geometry(section)
    stored, _ = extract_section(section, geometry)
    seen = _captured(monkeypatch)
    predict_slide(
        _bundle(geometry),
        section.uns["image_path"],
        pixel_size_um=section.uns["pixel_size_um"],
        positions=section.obsm["spatial"],
        batch_size=7,
        device="cpu",
    )
    np.testing.assert_array_equal(np.concatenate(seen), stored)


def test_the_background_threshold_comes_from_the_bundle(section, tmp_path: Path) -> None:
    pixel = section.uns["pixel_size_um"]
    counts = {}
    for threshold in (0.0, 1.0):
        path = tmp_path / f"model{threshold}"
        save_bundle(_bundle(_geometry(section, threshold=threshold)), path)
        out = predict_slide(
            load_bundle(path),
            section.uns["image_path"],
            pixel_size_um=pixel,
            pitch_um=100,
            device="cpu",
        )
        counts[threshold] = out.n_obs
    # 1.0 keeps every grid window, 0.0 only those wholly on tissue
    assert counts[1.0] > counts[0.0] > 0


def test_input_normalisation_comes_from_the_bundle(section) -> None:
    geometry = _geometry(section)
    default, shifted = _bundle(geometry), _bundle(geometry, mean=(0.1, 0.1, 0.1), std=(0.3,) * 3)
    shifted.state_dict = default.state_dict  # same weights, other input statistics
    run = {
        "pixel_size_um": section.uns["pixel_size_um"],
        "positions": section.obsm["spatial"][:4],
        "device": "cpu",
    }
    a = predict_slide(default, section.uns["image_path"], **run).X
    b = predict_slide(shifted, section.uns["image_path"], **run).X
    assert not np.allclose(a, b)


def test_bundles_written_before_the_spec_still_load(section, tmp_path: Path) -> None:
    import json

    geometry = _geometry(section)
    bundle = _bundle(geometry)
    save_bundle(bundle, tmp_path / "new")
    legacy = {k: v for k, v in bundle.config.items() if k not in ("model", "geometry")}
    legacy.update(
        backbone="test_resnet",
        aux_weight=0.0,
        size_px=24,
        window_um=150.0,
        stain_reference=geometry.stain_reference,
        pixel_mean=[0.485, 0.456, 0.406],
        pixel_std=[0.229, 0.224, 0.225],
    )
    (tmp_path / "new/config.json").write_text(json.dumps(legacy))
    old = load_bundle(tmp_path / "new")
    assert old.spec == bundle.spec and old.geometry == bundle.geometry


def test_a_context_model_reads_its_grid_neighbours_on_a_new_slide(section, tmp_path: Path) -> None:
    """A context model with a depth head, saved and loaded, maps a slide: each grid point
    is read with its grid neighbours, and the depth map comes with the gene maps."""
    from brstnet.inference.slide import slide_maps_figure
    from brstnet.st.neighbours import spot_neighbours
    from brstnet.training.context import predict_from_embeddings
    from brstnet.training.devices import resolve_device
    from brstnet.training.loop import predict_images

    geometry = _geometry(section)
    bundle = _bundle(geometry, depth_weight=1.0, context=True)
    bundle.config["target"].update(depth_mean=8.0, depth_std=0.5)
    save_bundle(bundle, tmp_path / "ctx")
    loaded = load_bundle(tmp_path / "ctx")
    assert loaded.spec.context and loaded.spec.predicts_depth
    positions = section.obsm["spatial"]
    pixel = section.uns["pixel_size_um"]
    out = predict_slide(loaded, section.uns["image_path"], pixel_size_um=pixel, positions=positions)
    assert out.n_obs == len(positions) and np.isfinite(out.X).all()
    assert np.isfinite(out.obs["predicted_log_depth"]).all()
    # the same numbers as embedding every spot, then reading each with its 3 x 3 neighbours
    seen = _captured_batches(section, geometry, positions)
    task = loaded.build_task()
    setup = resolve_device("cpu")
    embeddings = predict_images(task, [seen], setup, features=True)
    expected, depth_z = predict_from_embeddings(
        task, embeddings, spot_neighbours(positions), np.zeros(len(positions), np.int64), setup
    )
    np.testing.assert_allclose(out.X, expected, atol=1e-5)
    np.testing.assert_allclose(out.obs["predicted_log_depth"], depth_z * 0.5 + 8.0, atol=1e-5)
    figure = slide_maps_figure(out, ["ERBB2"])
    assert figure.size[0] > 600  # H&E, the depth map, ERBB2


def _captured_batches(section, geometry: PatchGeometry, positions: np.ndarray) -> np.ndarray:
    """The uint8 patches a slide's spots are cut into (as the patch store cuts them)."""
    from brstnet.st.cutting import cut_patches
    from brstnet.st.stain import StainNormalizer

    slide = open_slide(section.uns["image_path"], "A1")
    return cut_patches(
        slide,
        positions,
        geometry,
        section.uns["pixel_size_um"],
        normalizer=StainNormalizer(geometry.stain_reference),
    )
