"""The layout registry: names, errors, file-free patient names, acquisition, a new layout.

No test here reads the real her2st copy: the folders are synthetic.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brstnet.st import he2020, her2st, hest, readers, visium
from brstnet.st.acquisition import Source
from brstnet.st.errors import AcquisitionError, DataError
from brstnet.st.layouts import Layout, ReaderOptions, ReadRequest, read_in_place
from brstnet.st.sections import POSITION_COLUMNS, assemble_section, check_counts
from tests.synthetic import ORIGIN, PITCH_PX, dp_params, synthetic_tissue


def test_registry_lists_the_four_layouts_under_their_own_names() -> None:
    assert readers.DATASETS == ("her2st", "he2020", "visium", "hest")
    assert tuple(readers.LAYOUTS) == readers.DATASETS
    modules = {"her2st": her2st, "he2020": he2020, "visium": visium, "hest": hest}
    for name, layout in readers.LAYOUTS.items():
        assert layout.name == name and readers.get_layout(name) is modules[name].LAYOUT
    pitches = [readers.get_layout(n).spot_pitch_um for n in readers.DATASETS]
    assert pitches == [200.0, 200.0, 100.0, 100.0]  # ST arrays, Visium


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
        DataError, match=r"unknown dataset 'merfish'; use one of her2st, he2020, visium, hest"
    ):
        call()


def test_layout_names_are_checked() -> None:
    fields = {f: None for f in ("sections", "patient_of", "patient_from_name", "read", "acquire")}
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
    patients = ReaderOptions(patients={"V1": "P7", "TENX99": "P3"})
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
    configured = ReaderOptions(patients={"TENX1": "Q"})
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
    """A new layout ("flat"): one module's worth of code, registered by one dict entry."""
    return sorted(p.name.removesuffix(".counts.csv") for p in root.glob("*.counts.csv"))


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


def _flat_patient(section: str, options: ReaderOptions) -> str:
    return options.patients.get(section, section.split("-")[0])


def _flat_acquire(sections: Sequence[str], source: Source) -> dict:
    return read_in_place("flat", _flat_sections, sections, source)


FLAT = Layout(
    name="flat",
    spot_pitch_um=50.0,
    sections=_flat_sections,
    patient_of=lambda root, section, options: _flat_patient(section, options),
    patient_from_name=_flat_patient,
    read=_flat_read,
    acquire=_flat_acquire,
)


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


def test_a_registered_layout_is_read_through_readers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(readers.LAYOUTS, "flat", FLAT)
    root = tmp_path / "flat"
    counts = _write_flat(root, "P9-1")
    _write_flat(root, "P9-2")
    assert readers.sections("flat", root) == ["P9-1", "P9-2"]
    assert readers.patient_of("flat", root, "P9-2") == "P9"
    assert readers.patient_from_name("flat", "P9-2", ReaderOptions(patients={"P9-2": "Q"})) == "Q"
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
    with pytest.raises(DataError, match=r"use one of her2st, he2020, visium, hest, flat"):
        readers.get_layout("flot")
