"""The MLflow UI and kedro-viz in a real (headless) Chromium, as a researcher opens them:
the README's link lands on the runs table of the model-training view, which shows the
columns that compare variants without a click, the variants under their `kedro run`, and
kedro-viz draws the flowchart. Screenshots are kept (`make screenshots` writes them to
data/08_reporting/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.browser import COMPARISON_HEADERS, look, tiny_tracked_run
from tests.synthetic import project_copy


def test_mlflow_runs_table_and_kedro_viz_flowchart_in_chromium(tmp_path: Path) -> None:
    db = tiny_tracked_run(tmp_path)
    project = project_copy(tmp_path / "project")
    seen = look(db, project, tmp_path / "screenshots", tmp_path)

    # the link opens the model-training view's runs table on the comparison view
    assert "workflowType=machine_learning" in seen.runs_url
    assert "viewStateShareKey=brstnet-compare" in seen.runs_url
    for header in COMPARISON_HEADERS:
        assert header in seen.headers, (header, seen.headers)
    rows = {row["attributes.`Run Name`"].split("#")[-1][6:]: row for row in seen.rows}
    # the kedro run's row first, carrying the best variant's headline; its variants shown
    assert list(rows)[0] == "training"
    assert set(rows) == {"training", "test_resnet_aux", "test_resnet_noaux", "baseline_ridge"}
    parent = rows["training"]
    assert parent["metrics.`mean_r_libnorm`"] == "0.31"
    assert parent["params.`backbone`"] == "test_resnet"
    assert parent["params.`aux_weight`"] == "1.0" and parent["params.`patch_size_px`"] == "112"
    assert rows["test_resnet_noaux"]["metrics.`mean_r_libnorm`"] == "0.27"
    assert rows["baseline_ridge"]["params.`backbone`"] == "ridge on image features"
    # each fold an MLflow model; a variant's run lasts as long as its training
    assert rows["test_resnet_aux"]["attributes.`Models`"] == "test_resnet_aux_fold0"
    assert rows["test_resnet_aux"]["duration"] == "1.0min"

    # kedro-viz draws the training pipeline: its nodes and namespaces
    nodes = set(seen.flowchart_nodes)
    assert {"acquire_raw_data", "build_model_inputs", "log_best_variant"} <= nodes
    assert {"resnet18_aux_ctx_fold0", "resnet18_aux_ctx_fold1"} <= nodes  # namespaces, collapsed
    for shot in seen.screenshots:
        image = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert image.shape[1] == 2400 and image.std() > 10, shot  # a page, not a blank
