"""The runner tests' projects: one prepared once per package (data_processing and
feature_selection, sequential) and its sequential training + evaluation, the reference
every Dask and SLURM run is compared with."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.runner import SequentialRunner

from tests.runners.helpers import (
    PIPELINES,
    copy_of,
    own_tracking_store,
    run_session,
    tiny_parameters,
)
from tests.synthetic import project_copy, write_section


@pytest.fixture(scope="package")
def prepared(tmp_path_factory) -> Path:
    """A project whose data_processing and feature_selection are done (sequentially)."""
    tmp = tmp_path_factory.mktemp("dask")
    root = tmp / "her2st"
    for seed, section in enumerate(("A1", "A2", "B1")):
        write_section(root, section, seed=seed, n_x=5, n_y=4)
    project = project_copy(tmp / "prepared", tiny_parameters(root))
    own_tracking_store(project)
    raw = project / "data/01_raw"
    raw.mkdir(parents=True)
    (raw / "her2st_manifest.json").write_text(f'{{"root": "{root}"}}')  # synthetic: no download
    run_session(
        project,
        SequentialRunner(),
        pipeline_names=["data_processing", "feature_selection"],
        from_nodes=["read_sections"],
    )
    return project


@pytest.fixture(scope="package")
def sequential(prepared: Path, tmp_path_factory) -> Path:
    project = copy_of(prepared, tmp_path_factory.mktemp("seq") / "project")
    run_session(project, SequentialRunner(), pipeline_names=PIPELINES)
    return project
