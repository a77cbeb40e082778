"""inference wiring."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.predict_slides,
                "params:inference",
                ["slide_predictions", "slide_maps"],
                name="predict_slides",
            )
        ]
    )
