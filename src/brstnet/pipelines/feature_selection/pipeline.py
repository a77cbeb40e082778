"""feature_selection wiring."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes


def create_pipeline(**kwargs) -> Pipeline:
    params = "params:feature_selection"
    return Pipeline(
        [
            Node(
                nodes.split_patients,
                ["sections", params, "params:data_processing"],
                "splits",
                name="split_patients",
            ),
            Node(
                nodes.select_gene_panels,
                ["sections", "splits", params],
                ["gene_panels", "panel_leakage_report"],
                name="select_gene_panels",
            ),
            Node(
                nodes.fit_target_statistics,
                ["sections", "splits", "gene_panels", params],
                "target_statistics",
                name="fit_target_statistics",
            ),
            Node(
                nodes.build_model_inputs,
                ["sections", "splits", "gene_panels", "target_statistics", "patch_store", params],
                "model_inputs",
                name="build_model_inputs",
            ),
        ]
    )
