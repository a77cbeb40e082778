"""kedro-viz opens without a flood of warnings and previews the reports."""

from __future__ import annotations

import base64
import inspect
import subprocess
import sys
from pathlib import Path

import pandas as pd
from PIL import Image

from brstnet.datasets import AtomicDataset


def test_every_nodes_type_hints_resolve_and_the_node_modules_stay_light() -> None:
    """Kedro evaluates every node's type hints (typed-parameter validation, at each
    `kedro run` and `kedro viz`): an unresolvable name was one WARNING per node."""
    code = """
import sys, typing
from brstnet.pipelines import data_processing, evaluation, feature_selection, inference, model_training
print("torch imported by the nodes:", "torch" in sys.modules, "matplotlib.figure" in sys.modules)
from brstnet.pipelines.variants import variant_grid
variants, folds = variant_grid()
pipes = [data_processing.create_pipeline(), feature_selection.create_pipeline(),
         model_training.create_pipeline(variants=variants, n_folds=folds),
         evaluation.create_pipeline(variants=variants, n_folds=folds), inference.create_pipeline()]
nodes = [n for p in pipes for n in p.nodes]
for node in nodes:
    typing.get_type_hints(node.func)
print("resolved", len(nodes))
"""
    from tests.synthetic import REPO

    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "torch imported by the nodes: False False" in out.stdout
    resolved = int(out.stdout.split("resolved ")[1])
    assert resolved >= 30  # the default grid's pipelines: 34 nodes with one variant x 2 folds


def test_reports_have_kedro_viz_previews(tmp_path: Path) -> None:
    png = AtomicDataset(dataset="pillow.ImageDataset", filepath=str(tmp_path / "plot.png"))
    csv = AtomicDataset(
        dataset={"type": "pandas.CSVDataset", "save_args": {"index": False}},
        filepath=str(tmp_path / "table.csv"),
    )
    parquet = AtomicDataset(dataset="pandas.ParquetDataset", filepath=str(tmp_path / "t.parquet"))
    # kedro-viz reads the kind of preview from the return annotation's name
    for dataset, kind in ((png, "ImagePreview"), (csv, "TablePreview")):
        assert str(inspect.signature(dataset.preview).return_annotation) == kind
    assert not hasattr(parquet, "preview")
    assert png.preview() is None and csv.preview() is None  # not written yet: no preview
    png.save(Image.new("RGB", (4, 3), "red"))
    csv.save(pd.DataFrame({"gene": [f"G{i}" for i in range(8)], "median_r": range(8)}))
    assert base64.b64decode(png.preview()) == (tmp_path / "plot.png").read_bytes()
    table = csv.preview()
    assert table["columns"] == ["gene", "median_r"] and len(table["data"]) == 5
    assert csv.preview(nrows=2)["data"] == [["G0", 0], ["G1", 1]]
