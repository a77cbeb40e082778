"""data_processing wiring (no heavy imports at module top)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.acquire_raw_data,
                "params:data_processing",
                "raw_manifest",
                name="acquire_raw_data",
            ),
            Node(
                nodes.read_sections,
                ["raw_manifest", "params:data_processing"],
                "raw_sections",
                name="read_sections",
            ),
            Node(
                nodes.filter_spots,
                ["raw_sections", "params:data_processing"],
                ["sections", "spot_qc_report"],
                name="filter_spots",
            ),
            Node(
                nodes.fit_stain_reference,
                ["sections", "params:data_processing"],
                "stain_reference",
                name="fit_stain_reference",
            ),
            Node(
                nodes.extract_patches,
                ["sections", "stain_reference", "params:data_processing"],
                "patch_store",
                name="extract_patches",
            ),
        ]
    )
