"""The layout registry: names, options, errors, file-free patient names, acquisition, a
new layout registered and read the way the pipeline reads.

No test here reads the real her2st copy: the folders are synthetic.
"""

from __future__ import annotations

import builtins
import importlib
import json
import re
from importlib.metadata import EntryPoint
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydantic import Field, ValidationError

import brstnet.registry as registry_module
from brstnet.st import her2st, readers
from brstnet.st.acquisition import Source
from brstnet.st.counts import check_counts
from brstnet.st.errors import AcquisitionError, DataError
from brstnet.st.hest import HestOptions
from brstnet.st.layouts import Layout, LayoutOptions, ReadRequest
from brstnet.st.sections import POSITION_COLUMNS, assemble_section
from tests.synthetic import ORIGIN, PITCH_PX, dp_params, synthetic_tissue


def test_every_registered_layout_is_complete() -> None:
    """Each layout: its name, a positive pitch, its module's LAYOUT, an options model whose
    defaults parse and whose unknown keys are refused naming its own keys."""
    assert readers.datasets() == tuple(readers.LAYOUTS) and "her2st" in readers.datasets()
    for name, layout in readers.LAYOUTS.items():
        assert layout.name == name and readers.get_layout(name) is layout
        assert layout.spot_pitch_um > 0
        module = importlib.import_module(layout.read.__module__)
        assert module.LAYOUT is layout, f"{name}: its reader's module defines another LAYOUT"
        assert issubclass(layout.options, LayoutOptions)
        defaults = readers.options_for(name, None)
        assert type(defaults) is layout.options
        assert readers.options_for(name, defaults.model_dump()) == defaults
        # the shared configuration file lists every layout's keys unset: accepted
        assert readers.options_for(name, {"no_such_key": None, "other": {}}) == defaults
        keys = ", ".join(layout.options.model_fields) or "none"
        with pytest.raises(
            DataError,
            match=rf"data_processing.reader: dataset {name} does not take \['no_such_key'\]; "
            rf"its keys are: {re.escape(keys)}$",
        ):
            readers.options_for(name, {"no_such_key": 1})


def test_options_are_typed_by_the_layout() -> None:
    with pytest.raises(DataError, match=r"data_processing.reader \(visium\): bin_um: Input should"):
        readers.options_for("visium", {"bin_um": -1})
    with pytest.raises(
        DataError, match=r"dataset her2st does not take \['gene_map'\]; its keys are: none"
    ):
        readers.read("her2st", ".", "A1", options={"gene_map": "genes.tsv"})
    assert readers.options_for("hest", {"patients": {"S1": "P"}}) == HestOptions(
        patients={"S1": "P"}
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: readers.get_layout("merfish"),
        lambda: readers.sections("merfish", "."),
        lambda: readers.patient_of("merfish", None, "S1"),
        lambda: readers.patient_from_name("merfish", "S1"),
        lambda: readers.read("merfish", ".", "S1"),
    ],
)
def test_unknown_dataset_names_the_valid_ones(call) -> None:
    with pytest.raises(
        DataError, match=rf"unknown dataset 'merfish'; use one of {', '.join(readers.datasets())}"
    ):
        call()


def test_layout_names_are_checked() -> None:
    fields = {f: None for f in ("sections", "patient_from_name", "read")}
    with pytest.raises(ValueError, match="hold no '.'"):
        Layout(name="a.b", spot_pitch_um=100.0, **fields)
    with pytest.raises(ValueError, match="spot_pitch_um must be > 0"):
        Layout(name="ab", spot_pitch_um=0.0, **fields)


@pytest.fixture
def no_file_access(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Any attempt to open, stat or list a file fails the test."""
    monkeypatch.chdir(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError(f"file access: {args}")

    monkeypatch.setattr(builtins, "open", refuse)
    for name in "open read_text read_bytes is_file is_dir exists stat iterdir glob".split():
        monkeypatch.setattr(Path, name, refuse)
    monkeypatch.setattr(pd, "read_csv", refuse)
    monkeypatch.setattr(json, "load", refuse)


def test_patient_from_name_opens_no_file(no_file_access) -> None:
    patients = {"patients": {"V1": "P7", "TENX99": "P3"}}  # as data_processing.reader
    assert readers.patient_from_name("her2st", "B4") == "B"
    assert readers.patient_from_name("her2st", "H3") == "H"
    assert readers.patient_from_name("he2020", "BC23902_D2") == "BC23902"
    assert readers.patient_from_name("he2020", "BT_23903_C1") == "BT_23903"  # last "_" splits
    assert readers.patient_from_name("he2020", "nounderscore") is None
    assert readers.patient_from_name("visium", "V1", patients) == "P7"
    assert readers.patient_from_name("visium", "V2", patients) == "V2"  # its own patient
    assert readers.patient_from_name("visium", "V2") == "V2"
    assert readers.patient_from_name("hest", "TENX99", patients) == "P3"
    assert readers.patient_from_name("hest", "TENX98", patients) is None  # only in the json
    assert readers.patient_from_name("hest", "TENX99") is None
    with pytest.raises(DataError, match=r"unknown her2st section 'Z9'; valid sections are A1"):
        readers.patient_from_name("her2st", "Z9")


def _he2020_metadata(root: Path, rows: list[tuple[str, str]]) -> None:
    """A metadata.csv (no data files: enough to list sections and patients)."""
    root.mkdir(parents=True)
    meta = pd.DataFrame(rows, columns=["patient", "replicate"])
    for column in ("type", "histology_image", "spot_coordinates", "count_matrix"):
        meta[column] = "absent"
    meta.to_csv(root / "metadata.csv", index=False)


def _hest_samples(root: Path, patients: dict[str, str | None]) -> None:
    (root / "st").mkdir(parents=True)
    (root / "metadata").mkdir()
    for sample, patient in patients.items():
        (root / "st" / f"{sample}.h5ad").touch()
        (root / "metadata" / f"{sample}.json").write_text(json.dumps({"patient": patient}))


def test_patient_from_name_agrees_with_patient_of_where_it_can_tell(tmp_path: Path) -> None:
    _he2020_metadata(tmp_path / "he", [("BC23901", "C1"), ("BC23902", "D2")])
    _hest_samples(tmp_path / "hest", {"TENX1": "P1", "TENX2": None})
    assert readers.sections("he2020", tmp_path / "he") == ["BC23901_C1", "BC23902_D2"]
    for section in readers.sections("he2020", tmp_path / "he"):
        assert readers.patient_from_name("he2020", section) == readers.patient_of(
            "he2020", tmp_path / "he", section
        )
    for section in ("A1", "D6", "G2"):
        assert readers.patient_of("her2st", None, section) == readers.patient_from_name(
            "her2st", section
        )
    assert readers.sections("hest", tmp_path / "hest") == ["TENX1", "TENX2"]
    assert readers.patient_of("hest", tmp_path / "hest", "TENX1") == "P1"  # from the json
    assert readers.patient_of("hest", tmp_path / "hest", "TENX2") == "TENX2"
    configured = HestOptions(patients={"TENX1": "Q"})
    assert readers.patient_of("hest", tmp_path / "hest", "TENX1", configured) == "Q"
    with pytest.raises(DataError, match=r"unknown he2020 section 'X_1'; metadata.csv lists"):
        readers.patient_of("he2020", tmp_path / "he", "X_1")
    with pytest.raises(
        DataError, match=r"he2020: no data folder given; set data_processing.source.local_dir"
    ):
        readers.patient_of("he2020", None, "BC23901_C1")


def test_in_place_layouts_acquire_by_checking_the_folder(tmp_path: Path) -> None:
    _hest_samples(tmp_path / "hest", {"TENX1": "P1", "TENX2": "P2"})
    manifest = readers.get_layout("hest").acquire(
        ["TENX2"], Source(raw_dir=tmp_path / "raw", local_dir=tmp_path / "hest")
    )
    expected = {"dataset": "hest", "root": str(tmp_path / "hest"), "sections": {"TENX2": {}}}
    assert manifest == {**expected, "obtained": "read in place"}
    with pytest.raises(
        DataError,
        match=r"dataset hest: sections \['TENX3'\] are not in .*; it holds \['TENX1', 'TENX2'\]",
    ):
        readers.get_layout("hest").acquire(
            ["TENX3"], Source(raw_dir=tmp_path, local_dir=tmp_path / "hest")
        )
    missing = Source(raw_dir=tmp_path / "raw", local_dir=tmp_path / "absent")
    for name in ("visium", "hest"):
        with pytest.raises(
            DataError,
            match=rf"dataset {name}: set data_processing.source.local_dir to the folder that holds it \(now '.*absent'\)$",
        ):
            readers.get_layout(name).acquire(["S1"], missing)
    # he2020 also names the archive it could download instead
    with pytest.raises(
        DataError,
        match=r"dataset he2020: .*local_dir.*\(now None\); or source.archive_url to download the public zip",
    ):
        readers.get_layout("he2020").acquire(["BC1_A"], Source(raw_dir=tmp_path / "raw"))
    _he2020_metadata(tmp_path / "he", [("BC23901", "C1")])
    url = "http://127.0.0.1:9/never.zip"
    with_url = Source(raw_dir=tmp_path / "raw", local_dir=tmp_path / "he", archive_url=url)
    manifest = readers.get_layout("he2020").acquire(["BC23901_C1"], with_url)  # local copy wins
    assert manifest["obtained"] == "read in place" and manifest["root"] == str(tmp_path / "he")


def test_her2st_layout_downloads_or_copies_and_reads(tmp_path: Path, tiny_her2st: Path) -> None:
    with pytest.raises(
        AcquisitionError, match=r"no her2st source: set data_processing.source.local_dir"
    ):
        readers.get_layout("her2st").acquire(["B4"], Source(raw_dir=tmp_path / "raw"))
    with pytest.raises(DataError, match=r"unknown her2st section 'B9'"):
        readers.get_layout("her2st").acquire(
            ["B9"], Source(raw_dir=tmp_path, local_dir=tiny_her2st)
        )
    assert readers.sections("her2st", tmp_path / "absent") == list(her2st.SECTIONS)
    adata = readers.read("her2st", tiny_her2st, "B1")
    assert adata.uns["patient"] == "B" and adata.n_obs == 12
    assert adata.uns["pixel_size_um"] == pytest.approx(200.0 / PITCH_PX, rel=1e-3)  # 200 um pitch


def test_acquire_raw_data_calls_the_configured_layout(tmp_path: Path) -> None:
    from brstnet.pipelines.data_processing.nodes import acquire_raw_data

    _hest_samples(tmp_path / "hest", {"TENX1": "P1"})
    params = dp_params(
        dataset="hest",
        sections=["TENX1"],
        source={"local_dir": str(tmp_path / "hest"), "raw_dir": str(tmp_path / "raw")},
        stain={"reference_section": None},
    )
    manifest = acquire_raw_data(params)
    assert manifest["dataset"] == "hest" and manifest["obtained"] == "read in place"
    params["source"].update(local_dir=None, base_url=None)
    with pytest.raises(DataError, match=r"dataset hest: set data_processing.source.local_dir"):
        acquire_raw_data(params)
    with pytest.raises(AcquisitionError, match=r"no her2st source"):
        acquire_raw_data({**params, "dataset": "her2st", "sections": ["B4"]})


def _flat_sections(root: Path) -> list[str]:
    """A new layout ("flat"), defined here: its own options, reader and LAYOUT."""
    return sorted(p.name.removesuffix(".counts.csv") for p in root.glob("*.counts.csv"))


class FlatOptions(LayoutOptions):
    patients: dict[str, str] = Field(default_factory=dict)


def _flat_read(request: ReadRequest) -> ad.AnnData:
    root, section = request.root, request.section
    counts = pd.read_csv(root / f"{section}.counts.csv", index_col=0)
    positions = pd.read_csv(root / f"{section}.spots.csv", index_col=0)
    return assemble_section(
        dataset="flat",
        section=section,
        patient=_flat_patient(section, request.options),
        spot_ids=counts.index.astype(str),
        genes=counts.columns,
        counts=check_counts(counts, root / f"{section}.counts.csv", section),
        positions=positions,
        image=root / f"{section}.png",
        counts_file=root / f"{section}.counts.csv",
        positions_file=root / f"{section}.spots.csv",
        pixel_size_um=request.pixel_size_um,
        spot_pitch_um=request.spot_pitch_um,
        spot_diameter_um=request.spot_pitch_um / 2,
        max_unmatched_fraction=request.max_unmatched_fraction,
    )


def _flat_patient(section: str, options: FlatOptions) -> str:
    return options.patients.get(section, section.split("-")[0])


FLAT = Layout(  # read in place (the default acquire); the patient from the name alone
    name="flat",
    spot_pitch_um=50.0,
    sections=_flat_sections,
    read=_flat_read,
    patient_from_name=_flat_patient,
    options=FlatOptions,
)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The registry, restored after the test (layouts registered in it are dropped)."""
    monkeypatch.setattr(readers, "LAYOUTS", dict(readers.LAYOUTS))
    return readers.LAYOUTS


def _write_flat(root: Path, section: str) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    grid = np.array([(x, y) for y in range(3) for x in range(4)])
    ids = [f"s{x}_{y}" for x, y in grid]
    counts = pd.DataFrame(rng.poisson(30, (12, 3)), index=ids, columns=["ERBB2", "ACTB", "KRT19"])
    pixels = np.asarray(ORIGIN) + grid * PITCH_PX
    positions = pd.DataFrame(np.hstack([grid, pixels]), index=ids, columns=POSITION_COLUMNS)
    root.mkdir(parents=True, exist_ok=True)
    counts.to_csv(root / f"{section}.counts.csv")
    positions.to_csv(root / f"{section}.spots.csv")
    image = synthetic_tissue(800, 1000, (150, 100, 900, 700), rng)
    Image.fromarray(image).save(root / f"{section}.png")
    return counts


def test_a_registered_layout_is_read_through_readers(registry: dict, tmp_path: Path) -> None:
    assert readers.register_layout(FLAT) is FLAT and registry["flat"] is FLAT
    assert readers.register_layout(FLAT) is FLAT  # the same layout again: no change
    with pytest.raises(ValueError, match="a layout named 'her2st' is registered already"):
        readers.register_layout(Layout(**{**FLAT.__dict__, "name": "her2st"}))
    root = tmp_path / "flat"
    counts = _write_flat(root, "P9-1")
    _write_flat(root, "P9-2")
    assert readers.sections("flat", root) == ["P9-1", "P9-2"]
    assert readers.patient_of("flat", root, "P9-2") == "P9"
    assert readers.patient_from_name("flat", "P9-2", {"patients": {"P9-2": "Q"}}) == "Q"
    manifest = readers.get_layout("flat").acquire(
        ["P9-1"], Source(raw_dir=tmp_path, local_dir=root)
    )
    assert manifest["root"] == str(root) and manifest["obtained"] == "read in place"

    adata = readers.read("flat", manifest["root"], "P9-1")
    assert adata.uns["dataset"] == "flat" and adata.uns["patient"] == "P9"
    assert adata.n_obs == 12 and list(adata.var_names) == ["ERBB2", "ACTB", "KRT19"]
    np.testing.assert_array_equal(adata.X.toarray(), counts.to_numpy())
    # the layout's own pitch (50 um over PITCH_PX pixels) sets the estimated pixel size ...
    assert adata.uns["pixel_size_um"] == pytest.approx(50.0 / PITCH_PX, rel=1e-3)
    # ... unless the caller gives one, and a given pixel size wins over both
    wider = readers.read("flat", root, "P9-1", spot_pitch_um=100.0)
    assert wider.uns["pixel_size_um"] == pytest.approx(100.0 / PITCH_PX, rel=1e-3)
    fixed = readers.read("flat", root, "P9-1", pixel_size_um=0.5, spot_pitch_um=100.0)
    assert fixed.uns["pixel_size_um"] == 0.5
    assert readers.datasets()[-1] == "flat"  # registered last
    with pytest.raises(DataError, match=r"unknown dataset 'flot' \(did you mean flat\?\)"):
        readers.get_layout("flot")


def test_a_registered_layout_runs_through_the_pipeline_nodes(
    registry: dict, tmp_path: Path
) -> None:
    """The data_processing nodes obtain and read it with its own options, from the YAML
    mapping (the shared file's unset keys of other layouts included)."""
    from brstnet.pipelines.data_processing.nodes import acquire_raw_data, read_sections

    readers.register_layout(FLAT)
    root = tmp_path / "flat"
    counts = _write_flat(root, "P9-1")
    _write_flat(root, "Q2-1")
    params = dp_params(
        dataset="flat",
        sections=["P9-1", "Q2-1"],
        source={"local_dir": str(root), "raw_dir": str(tmp_path / "raw")},
        reader={"patients": {"Q2-1": "Q"}},
        stain={"reference_section": None},
        workers=1,
    )
    manifest = acquire_raw_data(params)
    assert manifest == {
        "dataset": "flat",
        "root": str(root),
        "sections": {"P9-1": {}, "Q2-1": {}},
        "obtained": "read in place",
    }
    out = read_sections(manifest, params)
    assert list(out) == ["P9-1", "Q2-1"]
    assert [out[s].uns["patient"] for s in out] == ["P9", "Q"]
    np.testing.assert_array_equal(out["P9-1"].X.toarray(), counts.to_numpy())
    assert out["P9-1"].uns["pixel_size_um"] == pytest.approx(50.0 / PITCH_PX, rel=1e-3)
    with pytest.raises(
        ValidationError,
        match=r"data_processing.reader: dataset flat does not take \['bin_um'\]; its keys "
        r"are: patients",
    ):
        read_sections(manifest, {**params, "reader": {"bin_um": 16}})


def test_layouts_named_as_entry_points_are_registered(
    registry: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = EntryPoint(name="flat", value=f"{__name__}:FLAT", group=readers.ENTRY_POINTS)
    groups = {readers.ENTRY_POINTS: [entry]}
    monkeypatch.setattr(registry_module, "entry_points", lambda group: groups.get(group, []))
    monkeypatch.setattr(registry_module, "_PLUGINS", {})  # loaded afresh, restored after
    assert "flat" not in registry
    assert readers.get_layout("flat") is FLAT and readers.datasets()[-1] == "flat"
