"""The results notebook runs against a finished project and shows the summary."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.synthetic import REPO

pytestmark = pytest.mark.real_data


def test_results_notebook_executes(real_run: Path) -> None:
    folder = real_run / "notebooks"
    folder.mkdir(exist_ok=True)
    shutil.copy(REPO / "notebooks/results.ipynb", folder / "results.ipynb")
    notebook = nbformat.read(folder / "results.ipynb", as_version=4)
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
    assert "baseline_ridge" in text and "test_resnet_aux" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # the two plots
