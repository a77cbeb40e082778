"""Patch extraction and the on-disk patch store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brstnet.st.cutting import extract_section
from brstnet.st.errors import DataError
from brstnet.st.geometry import PatchGeometry
from brstnet.st.her2st import locate_section, read_section
from brstnet.st.patches import PatchStore, load_patch_store, save_patch_store
from brstnet.st.slides import ArraySlide, open_slide


def test_crop_pads_with_white_past_the_edges() -> None:
    image = ArraySlide(np.zeros((10, 10, 3), np.uint8))
    out = image.crop(0, 0, 4)  # centred on the corner
    assert out.shape == (4, 4, 3)
    assert (out[:2, :2] == 255).all() and (out[2:, 2:] == 0).all()
    np.testing.assert_array_equal(image.crop(5, 5, 4), np.zeros((4, 4, 3)))


def test_extract_section(tiny_her2st: Path) -> None:
    adata = read_section(locate_section(tiny_her2st, "A1"))
    patches, index = extract_section(adata, PatchGeometry(window_um=150, size_px=32))
    assert patches.shape == (12, 32, 32, 3) and patches.dtype == np.uint8
    assert list(index["obs_name"]) == list(adata.obs_names)
    # 150 um at 200/145 um/px
    assert (index["window_px"] == round(150 / (200 / 145))).all()
    # every spot lies on the synthetic tissue: dark, textured patches, no background
    assert (patches.reshape(12, -1).mean(1) < 200).all() and (
        patches.reshape(12, -1).std(1) > 10
    ).all()
    assert index["passes_tissue"].all() and (index["background_fraction"] < 0.2).all()
    # the first patch is the window around spot 1x1, resized
    x, y = adata.obsm["spatial"][0]
    window = int(index["window_px"].iloc[0])
    raw = open_slide(adata.uns["image_path"], "A1").crop(x, y, window)
    assert abs(float(patches[0].mean()) - float(raw.mean())) < 2.0


def test_window_larger_than_image(tiny_her2st: Path) -> None:
    adata = read_section(locate_section(tiny_her2st, "A1"))
    with pytest.raises(
        DataError,
        match=r"section A1 .*: a 2000 um window is 1450 px .* larger than the image .*window_um",
    ):
        extract_section(adata, PatchGeometry(window_um=2000, size_px=32))


def test_corrupt_image_is_reported_at_decode(tiny_her2st: Path) -> None:
    adata = read_section(locate_section(tiny_her2st, "A1"))
    path = Path(adata.uns["image_path"])
    path.write_bytes(path.read_bytes()[:2000])  # truncated JPEG: the header still reads
    with pytest.raises(DataError, match=r"section A1: image .*HE_A1.jpg is corrupt or truncated"):
        extract_section(adata, PatchGeometry(window_um=150, size_px=32))


def _store(n: int = 5, value: int = 7) -> PatchStore:
    index = pd.DataFrame(
        {"obs_name": [f"s{i}" for i in range(n)], "row": np.arange(n)},
        index=[f"s{i}" for i in range(n)],
    )
    return PatchStore(np.full((n, 8, 8, 3), value, np.uint8), index, {"size_px": 8})


def test_store_round_trip_is_memory_mapped(tmp_path: Path) -> None:
    save_patch_store(_store(), tmp_path / "store")
    store = load_patch_store(tmp_path / "store")
    assert isinstance(store.patches, np.memmap) and store.patches.shape == (5, 8, 8, 3)
    assert (store.patches == 7).all() and store.meta == {"size_px": 8}
    np.testing.assert_array_equal(store.rows(["s3", "s1"]), [3, 1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no temp folders left


def test_failed_save_keeps_the_old_store(tmp_path: Path) -> None:
    save_patch_store(_store(value=7), tmp_path / "store")
    broken = _store(value=9)
    broken.meta = {"bad": object.__new__(type("Unserialisable", (), {"__str__": None}))}
    with pytest.raises(TypeError):
        save_patch_store(broken, tmp_path / "store")
    assert (load_patch_store(tmp_path / "store").patches == 7).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_store_validates_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\] uint8"):
        PatchStore(np.zeros((2, 8, 8), np.uint8), pd.DataFrame({"row": [0, 1]}))
    with pytest.raises(ValueError, match="index has 1 rows for 2 patches"):
        PatchStore(np.zeros((2, 8, 8, 3), np.uint8), pd.DataFrame({"row": [0]}))


def test_missing_store_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run the data_processing pipeline first"):
        load_patch_store(tmp_path / "nothing")


def test_store_names_are_re_exported_from_patches() -> None:
    from brstnet.st import patch_store, patches

    assert patches.PatchStore is patch_store.PatchStore
    assert patches.load_patch_store is patch_store.load_patch_store
    assert patches.save_patch_store is patch_store.save_patch_store


def test_jpeg_decodes_to_the_pixels_pil_gives(tiny_her2st: Path) -> None:
    from PIL import Image

    from brstnet.st.images import read_image

    path = read_section(locate_section(tiny_her2st, "A1")).uns["image_path"]
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB"))
    image = read_image(path, "A1")
    assert image.shape == (800, 1000, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, expected)
    Image.fromarray(expected).convert("L").save(Path(path).with_name("grey.jpg"))
    grey = read_image(Path(path).with_name("grey.jpg"), "A1")  # through PIL: made RGB
    assert grey.shape == (800, 1000, 3) and (grey[..., 0] == grey[..., 2]).all()
