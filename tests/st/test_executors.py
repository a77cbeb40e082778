"""Sections read and cut at once: in worker processes, or as tasks on a Dask cluster."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from brstnet.config import DataProcessingParams
from brstnet.st import readers
from brstnet.st.errors import DataError
from brstnet.st.executors import cpu_count, each_section
from brstnet.st.geometry import PatchGeometry
from brstnet.st.patches import load_patch_store, write_patch_store
from brstnet.st.stain import fit_stain_reference
from tests.synthetic import write_section


def _square_or_fail(x: int) -> tuple[int, int]:
    if x == 3:
        raise DataError(f"job {x} failed")
    return x * x, os.getpid()


def test_jobs_run_in_worker_processes_and_come_back_by_position() -> None:
    results = dict(each_section(_square_or_fail, [(1,), (2,), (4,)], workers=2))
    assert {k: square for k, (square, _) in results.items()} == {0: 1, 1: 4, 2: 16}
    assert os.getpid() not in {pid for _, pid in results.values()}
    serial = list(each_section(_square_or_fail, [(1,), (2,)], workers=1))
    assert serial == [(0, (1, os.getpid())), (1, (4, os.getpid()))]  # in order, here


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_raises_its_error(workers: int) -> None:
    with pytest.raises(DataError, match="job 3 failed"):
        list(each_section(_square_or_fail, [(1,), (3,), (2,)], workers=workers))


def test_workers_auto_is_one_per_core() -> None:
    assert DataProcessingParams(workers="auto").worker_count() == cpu_count() >= 1
    assert DataProcessingParams(workers=3).worker_count() == 3
    with pytest.raises(ValueError, match="workers must be 1 or more, or auto, got 0"):
        DataProcessingParams(workers=0)
    with pytest.raises(ValueError, match="executor"):
        DataProcessingParams(executor="threads")


def test_dask_without_a_client_says_what_to_do() -> None:
    with pytest.raises(DataError, match="executor is dask, but no Dask client is running"):
        list(each_section(_square_or_fail, [(1,)], executor="dask"))


def _equal_sections(a: dict[str, ad.AnnData], b: dict[str, ad.AnnData]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert (a[name].X != b[name].X).nnz == 0
        pd.testing.assert_frame_equal(a[name].obs, b[name].obs)
        np.testing.assert_array_equal(a[name].obsm["spatial"], b[name].obsm["spatial"])


def test_sections_read_in_processes_equal_those_read_here(tiny_her2st: Path) -> None:
    write_section(tiny_her2st, "C1", seed=3, n_x=5)
    names = ["B1", "C1", "A1"]
    serial = readers.read_all("her2st", tiny_her2st, names, workers=1)
    _equal_sections(readers.read_all("her2st", tiny_her2st, names, workers=2), serial)
    assert list(serial) == names and serial["C1"].n_obs == 15


def test_on_dask_the_sections_are_tasks_of_the_cluster(tiny_her2st: Path, tmp_path: Path) -> None:
    """Under the Dask runner the node runs in a Dask task: its sections become tasks of
    the same cluster (executor auto), and the store equals the one cut in this process."""
    from distributed import Client, LocalCluster, get_task_stream

    write_section(tiny_her2st, "C1", seed=3, n_x=5)
    names = ["A1", "B1", "C1"]
    sections = readers.read_all("her2st", tiny_her2st, names)
    reference = fit_stain_reference(sections["A1"], window_um=600)
    geometry = PatchGeometry(window_um=150, size_px=24, stain_reference=reference)
    write_patch_store(sections, geometry, tmp_path / "here", dataset="her2st")

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        read = readers.read_all("her2st", tiny_her2st, names, executor="dask")  # this client
        with get_task_stream(client) as stream:
            client.submit(  # as the Dask runner runs the node, on a worker
                write_patch_store,
                sections,
                geometry,
                tmp_path / "dask",
                dataset="her2st",
                executor="auto",
                pure=False,
            ).result()
        cut_tasks = [t["key"] for t in stream.data if str(t["key"]).startswith("_cut_into")]
    _equal_sections(read, sections)
    assert len(cut_tasks) == 3  # one task per section
    assert (tmp_path / "dask/patches.npy").read_bytes() == (
        tmp_path / "here/patches.npy"
    ).read_bytes()
    pd.testing.assert_frame_equal(
        load_patch_store(tmp_path / "dask").index, load_patch_store(tmp_path / "here").index
    )
