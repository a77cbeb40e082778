"""The patch store written section by section: bounded memory, resumable, parallel."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brstnet.st.geometry import PatchGeometry
from brstnet.st.her2st import locate_section, read_section
from brstnet.st.images import read_image
from brstnet.st.patches import (
    build_patch_store,
    load_patch_store,
    save_patch_store,
    write_patch_store,
)
from brstnet.st.slides import open_slide
from brstnet.st.stain import fit_stain_reference
from tests.st.former import cut_patch_by_patch
from tests.synthetic import write_section


@pytest.fixture
def three_sections(tiny_her2st: Path) -> dict[str, ad.AnnData]:
    write_section(tiny_her2st, "C1", seed=3, n_x=5)
    return {s: read_section(locate_section(tiny_her2st, s)) for s in ("B1", "A1", "C1")}


def _geometry(sections: dict[str, ad.AnnData]) -> PatchGeometry:
    reference = fit_stain_reference(sections["A1"], window_um=600)
    return PatchGeometry(window_um=150, size_px=24, stain_reference=reference)


def _assert_same_store(folder: Path, expected: Path) -> None:
    """Byte-identical patches, equal index and meta."""
    assert (folder / "patches.npy").read_bytes() == (expected / "patches.npy").read_bytes()
    written, old = load_patch_store(folder), load_patch_store(expected)
    pd.testing.assert_frame_equal(written.index, old.index)
    assert written.meta == old.meta


@pytest.mark.parametrize("workers", [1, 2])
def test_written_store_equals_the_in_memory_store(
    three_sections: dict, tmp_path: Path, workers: int, caplog: pytest.LogCaptureFixture
) -> None:
    geometry = _geometry(three_sections)
    save_patch_store(
        build_patch_store(three_sections, geometry, dataset="her2st"), tmp_path / "old"
    )
    with caplog.at_level(logging.INFO, logger="brstnet.st.patches"):
        caplog.clear()  # what earlier builds logged (when a Kedro session set INFO)
        write_patch_store(
            three_sections, geometry, tmp_path / "new", dataset="her2st", workers=workers
        )
    _assert_same_store(tmp_path / "new", tmp_path / "old")
    assert load_patch_store(tmp_path / "new").patches.shape == (12 + 12 + 15, 24, 24, 3)
    lines = sorted(r.getMessage() for r in caplog.records if r.name == "brstnet.st.patches")
    assert lines == [
        f"section {s}: {n} patches, 0 over 50% background (kept, excluded from training)"
        for s, n in (("A1", 12), ("B1", 12), ("C1", 15))
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["her2st", "new", "old"]  # no partial


def _build_and_die(sections: dict, geometry: PatchGeometry, path: Path) -> None:
    """Write the store; the process is killed (SIGKILL) when the third section is cut."""
    calls = []

    def c1() -> ad.AnnData:
        calls.append(1)
        if len(calls) == 2:  # the first call only counts the spots
            os.kill(os.getpid(), signal.SIGKILL)
        return sections["C1"]

    write_patch_store({**sections, "C1": c1}, geometry, path, dataset="her2st")


def test_a_killed_build_resumes_after_the_finished_sections(
    three_sections: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    geometry = _geometry(three_sections)
    write_patch_store(three_sections, geometry, tmp_path / "whole", dataset="her2st")

    store = tmp_path / "store"
    child = multiprocessing.get_context("fork").Process(
        target=_build_and_die, args=(three_sections, geometry, store)
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert not store.exists()  # no half store in place
    partial = tmp_path / ".store-partial"
    assert sorted(p.name for p in (partial / "done").glob("*.parquet")) == [
        "000000.parquet",
        "000001.parquet",
    ]

    with caplog.at_level(logging.INFO, logger="brstnet.st"):
        caplog.clear()  # what earlier builds logged (when a Kedro session set INFO)
        write_patch_store(three_sections, geometry, store, dataset="her2st")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("brstnet.st")]
    assert messages == [
        f"resuming the patch store {store}: 2 of 3 sections already written",
        "section C1: 15 patches, 0 over 50% background (kept, excluded from training)",
    ]  # B1 and A1 are not cut again
    _assert_same_store(store, tmp_path / "whole")
    assert not partial.exists()


def test_a_changed_plan_starts_afresh(
    three_sections: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    geometry = _geometry(three_sections)
    store = tmp_path / "store"
    child = multiprocessing.get_context("fork").Process(
        target=_build_and_die, args=(three_sections, geometry, store)
    )
    child.start()
    child.join(60)
    smaller = PatchGeometry(150, 16, stain_reference=geometry.stain_reference)
    with caplog.at_level(logging.INFO, logger="brstnet.st"):
        caplog.clear()  # what earlier builds logged (when a Kedro session set INFO)
        write_patch_store(three_sections, smaller, store, dataset="her2st")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("brstnet.st")]
    assert messages[0].startswith("discarding the unfinished patch store")
    assert len([m for m in messages if m.startswith("section ")]) == 3
    expected = build_patch_store(three_sections, smaller, dataset="her2st")
    np.testing.assert_array_equal(load_patch_store(store).patches, expected.patches)


def test_an_unreadable_plan_discards_the_unfinished_store(
    three_sections: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Failed before: a corrupt plan.json (a failed run's leftover) ended every later run
    in a bare JSON error naming no file, until the folder was deleted by hand."""
    geometry = _geometry(three_sections)
    store = tmp_path / "store"
    child = multiprocessing.get_context("fork").Process(
        target=_build_and_die, args=(three_sections, geometry, store)
    )
    child.start()
    child.join(60)
    plan = tmp_path / ".store-partial" / "plan.json"
    plan.write_bytes(plan.read_bytes()[:40])  # cut mid-write
    with caplog.at_level(logging.INFO, logger="brstnet.st"):
        caplog.clear()
        write_patch_store(three_sections, geometry, store, dataset="her2st")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("brstnet.st")]
    assert messages[0].startswith(
        f"discarding the unfinished patch store {plan.parent}: its plan.json cannot be read ("
    )
    assert len([m for m in messages if m.startswith("section ")]) == 3  # all cut afresh
    expected = build_patch_store(three_sections, geometry, dataset="her2st")
    np.testing.assert_array_equal(load_patch_store(store).patches, expected.patches)


def test_write_patch_store_refuses_bad_arguments(three_sections: dict, tmp_path: Path) -> None:
    geometry = PatchGeometry(window_um=150, size_px=16)
    with pytest.raises(ValueError, match="at least one section"):
        write_patch_store({}, geometry, tmp_path / "s", dataset="her2st")
    with pytest.raises(ValueError, match="workers must be 1 or more, got 0"):
        write_patch_store(three_sections, geometry, tmp_path / "s", dataset="her2st", workers=0)


@pytest.mark.real_data
def test_real_sections_written_by_two_workers_equal_the_former_store(
    her2st_dir: Path, tmp_path: Path
) -> None:
    sections = {s: read_section(locate_section(her2st_dir, s)) for s in ("B4", "C3")}
    reference = fit_stain_reference(sections["C3"], window_um=1500)
    geometry = PatchGeometry(window_um=150, size_px=112, stain_reference=reference)
    save_patch_store(build_patch_store(sections, geometry, dataset="her2st"), tmp_path / "old")
    write_patch_store(sections, geometry, tmp_path / "new", dataset="her2st", workers=2)
    _assert_same_store(tmp_path / "new", tmp_path / "old")
    store = load_patch_store(tmp_path / "new")
    assert store.index["section"].value_counts().to_dict() == {"B4": 283, "C3": 180}
    # the numbers of the former per-patch code (torchstain on one patch at a time), on
    # images decoded as PIL decodes them
    for section, adata in sections.items():
        with Image.open(adata.uns["image_path"]) as img:
            np.testing.assert_array_equal(
                read_image(adata.uns["image_path"], section), np.asarray(img.convert("RGB"))
            )
        rows = store.index["section"].eq(section).to_numpy()
        window = int(store.index.loc[rows, "window_px"].iloc[0])
        slide = open_slide(adata.uns["image_path"], section)
        former = cut_patch_by_patch(slide, adata.obsm["spatial"], window, 112, reference)
        np.testing.assert_array_equal(store.patches[rows], former)


def _tiles(side: int, tile: int = 512):
    """Tiles of a [side, side, 3] slide: pale pink tissue with a darker stripe per tile."""
    block = np.full((tile, tile, 3), (220, 170, 200), np.uint8)
    block[::16] = (120, 60, 140)
    for _ in range((-(-side // tile)) ** 2):  # ceil: edge tiles are whole tiles
        yield block


def _pyramid(path: Path, side: int) -> Path:
    """A tiled, zlib-compressed TIFF with two reduced levels (1/4, 1/16) in SubIFDs."""
    import tifffile

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        options = {"tile": (512, 512), "photometric": "rgb", "compression": "zlib"}
        tif.write(_tiles(side), shape=(side, side, 3), dtype=np.uint8, subifds=2, **options)
        for level in (side // 4, side // 16):
            tif.write(
                _tiles(level), shape=(level, level, 3), dtype=np.uint8, subfiletype=1, **options
            )
    return path


def _spots(image: Path, side: int, n: int) -> ad.AnnData:
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"spot_id": [str(i) for i in range(n)], "section": "T", "patient": "P"})
    obs.index = [f"T_{i}" for i in range(n)]
    adata = ad.AnnData(obs=obs, obsm={"spatial": rng.uniform(500, side - 500, (n, 2))})
    adata.uns.update(section="T", image_path=str(image), pixel_size_um=0.5)
    return adata


def _write_slide_and_cut(path: Path, queue) -> None:
    """In a fresh process: cut 40 spots from a 20,480 px pyramidal TIFF; report the growth
    of peak resident memory while cutting."""
    import resource

    geometry = PatchGeometry(100, 32)
    # a store from a small slide first: imports and warms up everything the cutting uses
    small = _pyramid(path / "small.tif", 4096)
    write_patch_store({"T": _spots(small, 4096, 2)}, geometry, path / "warm", dataset="hest")
    large = _pyramid(path / "large.tif", 20480)  # level 0: 1.2 GB of pixels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    write_patch_store({"T": _spots(large, 20480, 40)}, geometry, path / "store", dataset="hest")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(((after - before) * 1024, load_patch_store(path / "store").patches.shape))


def test_a_large_tiff_is_read_by_regions(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # a fresh process: its own peak memory
    queue = context.Queue()
    child = context.Process(target=_write_slide_and_cut, args=(tmp_path, queue))
    child.start()
    child.join(300)
    assert child.exitcode == 0
    growth, shape = queue.get(timeout=5)
    assert shape == (40, 32, 32, 3)
    # a whole level 0 is 1.2 GB and level 1 79 MB; the thumbnail's level 2 is 4.9 MB
    assert growth < 50e6, f"peak memory grew by {growth / 1e6:.0f} MB while cutting"
