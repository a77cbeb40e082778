"""The results notebook runs against a finished project, shows the summary, picks the
best variant by median r and leaves no stray files."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from tests.synthetic import REPO

pytestmark = pytest.mark.real_data


def test_results_notebook_executes(real_run: Path) -> None:
    folder = real_run / "notebooks"
    folder.mkdir(exist_ok=True)
    shutil.copy(REPO / "notebooks/results.ipynb", folder / "results.ipynb")
    notebook = nbformat.read(folder / "results.ipynb", as_version=4)
    before = {p: p.stat().st_mtime_ns for p in real_run.rglob("*") if p.is_file()}
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    outputs = [
        o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(
        str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", "")) for o in outputs
    )
    assert "baseline_ridge" in text and "test_resnet_aux_ctx" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # the two plots
    summary = pd.read_csv(real_run / "data/08_reporting/evaluation_summary.csv")
    models = summary[~summary["variant"].str.startswith(("baseline", "reference"))]
    best = models.sort_values("mean_r_libnorm", ascending=False).iloc[0]["variant"]
    assert f"best variant by mean r on library-normalised counts: {best}" in text
    # no stray files: nothing written or changed in the project (the notebook is run in
    # memory, so even its own file is untouched)
    after = {p: p.stat().st_mtime_ns for p in real_run.rglob("*") if p.is_file()}
    assert after == before
