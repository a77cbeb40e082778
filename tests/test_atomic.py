"""Atomic writes after a kill -9: the previous version survives, and the next write of the
same target clears what the killed one left (issue 17)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from brstnet.atomic import atomic_file, atomic_folder
from brstnet.processes import Owner
from tests.synthetic import gone_process_owner

KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from brstnet.atomic import atomic_file, atomic_folder

    with atomic_folder(sys.argv[1]) as tmp:
        (tmp / "patches.npy").write_bytes(b"new" * 1000)
        with atomic_file(sys.argv[2]) as part:
            part.write_bytes(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _write_store(path: Path, content: bytes) -> None:
    with atomic_folder(path) as tmp:
        (tmp / "patches.npy").write_bytes(content)


def test_a_killed_write_keeps_the_old_version_and_the_next_write_clears_its_leftovers(
    tmp_path: Path,
) -> None:
    """Failed before: `.patch_store.<random>/` and `.inner0.pt.<random>.tmp` stayed forever."""
    store, checkpoint = tmp_path / "patch_store", tmp_path / "inner0.pt"
    _write_store(store, b"old")
    checkpoint.write_bytes(b"old checkpoint")
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(store), str(checkpoint)], timeout=60
    )
    assert done.returncode == -9
    # the kill left the previous versions in place, and its temporary files beside them
    assert (store / "patches.npy").read_bytes() == b"old"
    assert checkpoint.read_bytes() == b"old checkpoint"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert len(leftovers) == 2
    assert leftovers[0].startswith(".inner0.pt.") and leftovers[0].endswith(".tmp")
    assert leftovers[1].startswith(".patch_store.")

    with atomic_file(checkpoint) as tmp:
        tmp.write_bytes(b"new checkpoint")
    _write_store(store, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inner0.pt", "patch_store"]
    assert checkpoint.read_bytes() == b"new checkpoint"
    assert (store / "patches.npy").read_bytes() == b"new"


def test_a_leftover_old_folder_does_not_block_later_saves(tmp_path: Path) -> None:
    """Failed before: a `.patch_store.old` left by a kill made every later save fail."""
    store = tmp_path / "patch_store"
    _write_store(store, b"first")
    (tmp_path / ".patch_store.old").mkdir()
    (tmp_path / ".patch_store.old" / "patches.npy").write_bytes(b"older")
    _write_store(store, b"second")
    assert (store / "patches.npy").read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patch_store"]


def test_a_kill_between_the_two_renames_restores_the_previous_folder(tmp_path: Path) -> None:
    store = tmp_path / "patch_store"
    old = tmp_path / f".patch_store.{gone_process_owner().token}.k2j4h1.old"
    old.mkdir()
    (old / "patches.npy").write_bytes(b"previous")
    with atomic_file(tmp_path / "patch_store.json") as tmp:  # another target: untouched
        tmp.write_text("{}")
    assert old.is_dir() and not store.exists()
    with atomic_folder(store) as tmp:
        assert (store / "patches.npy").read_bytes() == b"previous"  # back before the new one
        (tmp / "patches.npy").write_bytes(b"new")
    assert (store / "patches.npy").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patch_store", "patch_store.json"]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    live = tmp_path / f".metrics.json.{Owner.current().token}.abc123.tmp"
    live.write_text("being written")
    elsewhere = tmp_path / f".metrics.json.{'other-host'}~{1}~{1}.abc123.tmp"
    elsewhere.write_text("another machine's")
    dead = tmp_path / f".metrics.json.{gone_process_owner().token}.abc123.tmp"
    dead.write_text("killed")
    with atomic_file(target) as tmp:
        tmp.write_text("{}")
    assert live.exists() and elsewhere.exists() and not dead.exists()


# ---------------------------------------------------------------- the project's catalog

ATOMIC_TYPES = {
    "brstnet.datasets.AtomicDataset",
    "brstnet.datasets.AnnDataDataset",
    "brstnet.datasets.ModelBundleDataset",
    "brstnet.datasets.PatchStoreDataset",
    "brstnet.datasets.WindowStoreDataset",  # PartialStore, as the patch store
    "brstnet.datasets.TrunkWeightsDataset",  # brstnet.atomic.atomic_file
    "brstnet.datasets.MlflowChildRunDataset",  # MLflow's store, no file of ours
    "brstnet.datasets.MlflowParentRunDataset",  # the same
}
WRAPPERS = {"partitions.PartitionedDataset", "kedro_mlflow.io.artifacts.MlflowArtifactDataset"}


def _catalog_config() -> dict:
    import yaml

    from tests.synthetic import REPO

    return yaml.safe_load((REPO / "conf/base/catalog.yml").read_text())


def _writes_atomically(entry: dict | str) -> bool:
    entry = {"type": entry} if isinstance(entry, str) else entry
    if entry["type"] in WRAPPERS:
        return _writes_atomically(entry["dataset"])
    return entry["type"] in ATOMIC_TYPES


def test_every_catalog_output_is_written_atomically() -> None:
    """Failed before: CSV / JSON / parquet / PNG / pickle outputs went through kedro-datasets,
    which write in place (the README said otherwise)."""
    config = _catalog_config()
    in_place = [name for name, entry in config.items() if not _writes_atomically(entry)]
    assert in_place == []


class _DiskFull:
    """Writes the start of a file, then fails, as a full disk or a kill mid-write would."""

    def to_csv(self, path_or_buf, **kwargs) -> None:
        path_or_buf.write("gene,r\nERBB2,0.")
        raise OSError(28, "No space left on device")

    def to_parquet(self, path, **kwargs) -> None:
        path.write(b"PAR1\x15\x04")
        raise OSError(28, "No space left on device")

    def save(self, fp, format=None, **kwargs) -> None:  # PIL.Image.save
        fp.write(b"\x89PNG\r\n\x1a\n")
        raise OSError(28, "No space left on device")


class _Unpicklable:
    def __reduce__(self):
        raise TypeError("cannot pickle this")


def _good_and_half(kind: str):
    import pandas as pd
    from PIL import Image

    table = pd.DataFrame({"gene": ["ERBB2", "GRB7"], "r": [0.61, 0.51]})
    return {
        "pandas.CSVDataset": (table, _DiskFull()),
        "pandas.ParquetDataset": (table, _DiskFull()),
        "json.JSONDataset": ({"median_r": 0.48}, {"median_r": 0.5, "genes": object()}),
        "pickle.PickleDataset": ({"x": [1, 2]}, [b"x" * 300_000, _Unpicklable()]),
        "pillow.ImageDataset": (Image.new("RGB", (4, 4), "white"), _DiskFull()),
    }[kind]


def _file_entries() -> list[tuple[str, str]]:
    """(catalog name, inner type) of every single-file entry that writes incrementally
    (Matplotlib renders into memory first, so only a kill can half-write it)."""
    out = []
    for name, entry in _catalog_config().items():
        inner = entry.get("dataset", entry["type"]) if "filepath" in entry else None
        kind = inner["type"] if isinstance(inner, dict) else inner
        if kind and kind != "matplotlib.MatplotlibDataset" and not kind.startswith("brstnet."):
            out.append((name.replace("{", "").replace("}", ""), kind))
    return out


@pytest.mark.parametrize(("name", "kind"), _file_entries())
def test_a_failed_save_leaves_the_previous_output(tmp_path: Path, name: str, kind: str) -> None:
    """Failed before: the half-written file replaced the previous output."""
    from kedro.io import DatasetError

    from tests.synthetic import project_catalog

    catalog = project_catalog(tmp_path)
    good, half = _good_and_half(kind)
    catalog.save(name, good)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(files) == 1
    before = files[0].read_bytes()
    with pytest.raises(DatasetError):
        catalog.save(name, half)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files  # no temp file left
    assert files[0].read_bytes() == before
