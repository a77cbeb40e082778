"""How the MLflow UI opens the project's experiment: the model-training view, on a runs
table that already shows the figures that compare variants.

- ``mlflow.experimentKind = custom_model_development``: MLflow 3 opens an experiment in
  its GenAI view unless told it holds model training.
- A shared view (``mlflow.sharedViewState.<key>``, what the UI's "Share" button writes):
  the comparison columns selected, the latest ``kedro run`` expanded to its variants.
  :func:`runs_table_url` is the link that opens it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from brstnet.metrics import MetricNames, compared_metrics

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
#: The shared view's key (``viewStateShareKey`` in the link).
COMPARISON_VIEW = "brstnet-compare"
#: The metrics that compare variants, in the order the runs table shows them: every
#: registered metric with a ``compare`` position (:func:`brstnet.metrics.compared_metrics`):
#: what the model knows of genes first (r on library-normalised values, the field's
#: headline; partial r given read depth), then BrST-Net's statistics on log(1 + count).
COMPARISON_METRICS = MetricNames(compared_metrics)
#: The parameters that tell variants apart.
COMPARISON_PARAMS = ("backbone", "aux_weight", "patch_size_px")


def column(kind: str, name: str) -> str:
    """A runs-table column as the MLflow UI names it: ``metrics.`median_r```."""
    return f"{kind}.`{name}`"


def comparison_view(*, expanded: tuple[str, ...] = ()) -> dict:
    """The runs table's state: the comparison columns, newest runs first, ``expanded``
    parent runs open (their child runs, the variants, shown)."""
    return {
        "selectedColumns": [
            *(column("metrics", m) for m in COMPARISON_METRICS),
            *(column("params", p) for p in COMPARISON_PARAMS),
            column("attributes", "Models"),
        ],
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "runsExpanded": dict.fromkeys(expanded, True),
    }


def set_experiment_views(
    client: MlflowClient, experiment_id: str, *, expand: str | None = None, replace: bool = True
) -> None:
    """Mark the experiment as model training and store the comparison view.

    Args:
        expand: A parent run to show expanded (the current ``kedro run``).
        replace: False: keep a comparison view already stored.
    """
    experiment = client.get_experiment(experiment_id)
    key = SHARED_VIEW_PREFIX + COMPARISON_VIEW
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    if replace or key not in experiment.tags:
        view = comparison_view(expanded=(expand,) if expand else ())
        client.set_experiment_tag(experiment_id, key, json.dumps(view))


def runs_table_url(base_url: str, experiment_id: str) -> str:
    """The link that opens ``experiment_id``'s runs table in the model-training view with
    the comparison columns (``base_url`` e.g. ``http://127.0.0.1:5000``)."""
    return (
        f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
        f"?viewStateShareKey={COMPARISON_VIEW}&workflowType=machine_learning"
    )


def experiment_url(tracking_uri: str, base_url: str, experiment: str = "brstnet") -> str | None:
    """:func:`runs_table_url` for the experiment named ``experiment`` in ``tracking_uri``
    (None when the store has no such experiment yet)."""
    from mlflow.tracking import MlflowClient  # mlflow only when a link is asked for

    found = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    return None if found is None else runs_table_url(base_url, found.experiment_id)
