"""data_processing: nodes on tiny synthetic data, and the pipeline on the real her2st copy."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from kedro.runner import SequentialRunner

from brstnet.pipelines import data_processing
from brstnet.pipelines.data_processing import create_pipeline
from brstnet.pipelines.data_processing.nodes import filter_spots
from brstnet.st.errors import DataError
from brstnet.st.patches import load_patch_store
from tests.synthetic import dp_params, project_catalog


def _run_tiny(root: Path, **overrides) -> dict:
    overrides["stain"] = {"reference_section": None, **overrides.get("stain", {})}
    params = dp_params(**{"sections": ["A1", "B1"], **overrides})
    catalog = project_catalog(root.parent / "project")
    catalog["params:data_processing"] = params
    catalog["raw_manifest"] = {"root": str(root)}
    pipeline = create_pipeline().from_nodes("read_sections")
    SequentialRunner().run(pipeline, catalog)
    return {
        name: catalog.load(name)
        for name in ("sections", "spot_qc_report", "stain_reference", "patch_store")
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_pipeline_on_tiny_sections(tiny_her2st: Path, workers: int) -> None:
    out = _run_tiny(
        tiny_her2st,
        qc={"min_total_reads": 0},
        patches={"window_um": 150, "size_px": 24},
        workers=workers,
    )
    store = out["patch_store"]
    assert isinstance(store.patches, np.memmap)  # written to disk, not handed over in memory
    assert store.patches.shape == (24, 24, 24, 3)
    assert list(store.index["section"].unique()) == ["A1", "B1"]
    np.testing.assert_array_equal(store.index["row"], np.arange(24))
    assert store.meta["stain_reference"]["method"] == "macenko" and store.meta["size_px"] == 24
    assert out["spot_qc_report"]["kept"].tolist() == [12, 12]


def test_qc_drops_low_read_spots(tiny_her2st: Path) -> None:
    # tiny spots hold ~2,200 reads on average (Poisson): a threshold at the median drops about half
    counts = pd.read_csv(tiny_her2st / "data/ST-cnts/A1.tsv.gz", sep="\t", index_col=0).sum(axis=1)
    threshold = int(counts.median())
    out = _run_tiny(tiny_her2st, qc={"min_total_reads": threshold}, stain={"method": None})
    sections = out["sections"]
    a1 = sections["A1"]()
    assert a1.n_obs == int((counts >= threshold).sum())
    assert (a1.obs["total_counts"] >= threshold).all()
    report = out["spot_qc_report"].set_index("section")
    assert report.loc["A1", "dropped_low_reads"] == int((counts < threshold).sum())
    assert out["stain_reference"] == {"method": None}


def test_empty_section_after_qc_is_an_error() -> None:
    adata = ad.AnnData(np.ones((3, 2), np.int32))
    adata.obs["total_counts"] = [5, 7, 9]
    adata.uns.update(section="A1", patient="A", image_path="x.jpg", pixel_size_um=1.0)
    with pytest.raises(
        DataError, match=r"section A1: no spot has 1000 or more reads \(the most is 9"
    ):
        filter_spots({"A1": adata}, dp_params(sections=["A1"], stain={"reference_section": None}))


def test_a_typo_in_parameters_names_the_key(tiny_her2st: Path) -> None:
    with pytest.raises(ValueError, match="min_total_read"):
        _run_tiny(tiny_her2st, qc={"min_total_read": 10})
    with pytest.raises(
        ValueError, match=r"stain.reference_section 'C2' is not among sections \['A1', 'B1'\]"
    ):
        _run_tiny(tiny_her2st, stain={"reference_section": "C2"})
    # failed before: an unknown section was reported as a missing stain reference
    with pytest.raises(ValueError, match=r"unknown her2st section 'Z9'; valid sections are A1,"):
        _run_tiny(tiny_her2st, sections=["Z9"], stain={"reference_section": "C2"})


def _spot_file(her2st_dir: Path, section: str) -> pd.DataFrame:
    return pd.read_csv(her2st_dir / f"data/ST-spotfiles/{section}_selection.tsv", sep="\t")


@pytest.mark.real_data
def test_real_sections_match_the_published_files(real_run: Path, her2st_dir: Path) -> None:
    for section in ("B4", "C2"):
        raw = ad.read_h5ad(real_run / f"data/02_intermediate/sections/{section}.h5ad")
        counts = pd.read_csv(her2st_dir / f"data/ST-cnts/{section}.tsv.gz", sep="\t", index_col=0)
        spots = _spot_file(her2st_dir, section)
        spot_ids = set(spots["x"].astype(str) + "x" + spots["y"].astype(str))
        # every counted spot is in the spot file; B4's spot file has one spot without counts
        assert raw.n_obs == len(counts) == len(spot_ids & set(counts.index))
        assert len(spot_ids) - raw.n_obs == {"B4": 1, "C2": 0}[section]
        assert raw.n_vars == counts.shape[1]
        assert raw.X.sum() == counts.to_numpy().sum()
        assert raw.uns["pixel_size_um"] == pytest.approx(0.688, abs=0.005)
        kept = ad.read_h5ad(real_run / f"data/03_primary/sections/{section}.h5ad")
        assert kept.n_obs == int((counts.sum(axis=1) >= 1000).sum())
        # HER2+ tumours: ERBB2 among the most expressed of ~15,000 genes
        mean = np.asarray(kept.X.mean(axis=0)).ravel()
        rank = int((mean > mean[kept.var_names.get_loc("ERBB2")]).sum()) + 1
        assert rank <= 50, f"{section}: ERBB2 ranks {rank}"
    report = pd.read_csv(real_run / "data/08_reporting/spot_qc.csv").set_index("section")
    assert report.loc["B4", "kept"] == 110 and report.loc["C2", "kept"] == 182


@pytest.mark.real_data
def test_real_patch_store(real_run: Path) -> None:
    store = load_patch_store(real_run / "data/04_feature/patch_store")
    assert store.patches.shape == (110 + 182 + 177, 112, 112, 3)
    assert store.index["section"].value_counts().to_dict() == {"C2": 182, "C3": 177, "B4": 110}
    flat = store.patches.reshape(len(store), -1)
    tissue = store.index["passes_tissue"].to_numpy()
    assert tissue.mean() > 0.85
    # tissue patches are not blank: textured and darker than glass
    assert (flat[tissue].std(axis=1) > 15).all() and (flat[tissue].mean(axis=1) < 220).all()
    assert (store.index["window_px"] == 218).all()  # 150 um at ~0.688 um/px
    assert store.meta["stain_reference"]["section"] == "C2"
    assert (real_run / "data/04_feature/stain_reference.json").is_file()


@pytest.mark.real_data
def test_pipeline_reads_the_he2020_layout_in_place(tmp_path: Path, her2st_dir: Path) -> None:
    from brstnet.pipelines.variants import n_folds
    from tests.layouts import write_he2020

    root = tmp_path / "he2020"
    gene_map = write_he2020(root, her2st_dir, {"B4": ("BC23901", "C1"), "C2": ("BC23902", "D2")})
    params = dp_params(
        dataset="he2020",
        sections=["BC23901_C1", "BC23902_D2"],
        source={"local_dir": str(root)},
        reader={"gene_map": str(gene_map)},
        stain={"reference_section": "BC23902_D2"},
    )
    catalog = project_catalog(tmp_path / "project")
    catalog["params:data_processing"] = params
    SequentialRunner().run(data_processing.create_pipeline(), catalog)
    manifest = catalog.load("raw_manifest")
    assert manifest["obtained"] == "read in place" and manifest["root"] == str(root)
    store = catalog.load("patch_store")
    assert store.index["section"].value_counts().to_dict() == {"BC23902_D2": 182, "BC23901_C1": 110}
    assert n_folds(params, {"split": {"scheme": "lopo"}}) == 2
    with pytest.raises(DataError, match=r"sections \['BC1_X'\] are not in"):
        from brstnet.pipelines.data_processing.nodes import acquire_raw_data

        acquire_raw_data(
            dp_params(
                dataset="he2020",
                sections=["BC1_X"],
                source={"local_dir": str(root)},
                stain={"reference_section": None},
            )
        )


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_image_stops_the_run_when_sections_are_read(
    tiny_her2st: Path, suffix: str
) -> None:
    """Failed before: the image header was read at read_sections and the image decoded at
    fit_stain_reference, after raw_sections, sections and spot_qc_report were saved."""
    from PIL import Image

    folder = tiny_her2st / "data/ST-imgs/B/B1"
    image = next(folder.iterdir())
    if suffix == ".png":
        Image.open(image).save(folder / "HE_B1.png")
        image.unlink()
        image = folder / "HE_B1.png"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) * 2 // 3])
    project = tiny_her2st.parent / "project"
    with pytest.raises(
        Exception, match=r"section B1: image .*HE_B1\.(jpg|png) is truncated or corrupt"
    ) as err:
        _run_tiny(tiny_her2st)
    assert "replace the file" in str(err.value)
    assert not (project / "data").exists() or not any((project / "data").rglob("*.*"))


def test_patches_and_the_stain_reference_read_no_counts(tiny_her2st: Path) -> None:
    """extract_patches and fit_stain_reference need the spots' positions and images, not
    their counts: the PartitionedDataset's loaders they get are swapped for
    ``AnnDataDataset.load_spots``, which reads obs, obsm and uns as saved and no genes."""
    import h5py

    from brstnet.datasets import AnnDataDataset
    from brstnet.pipelines.data_processing.nodes import extract_patches, spots_loader

    params = dp_params(
        sections=["A1", "B1"], qc={"min_total_reads": 0}, stain={"reference_section": None}
    )
    catalog = project_catalog(tiny_her2st.parent / "project")
    catalog["params:data_processing"] = params
    catalog["raw_manifest"] = {"root": str(tiny_her2st)}
    SequentialRunner().run(create_pipeline().from_nodes("read_sections"), catalog)

    loaders = catalog.load("sections")
    full, spots = loaders["A1"](), spots_loader(loaders["A1"])()
    assert full.n_vars > 0 and spots.n_vars == 0 and spots.n_obs == full.n_obs
    pd.testing.assert_frame_equal(spots.obs, full.obs)
    np.testing.assert_array_equal(spots.obsm["spatial"], full.obsm["spatial"])
    assert spots.uns.keys() == full.uns.keys()
    assert spots.uns["image_path"] == full.uns["image_path"]
    assert spots_loader(full) is full  # an AnnData passes through

    build = extract_patches(loaders, {"method": None}, params)
    assert all(loader().n_vars == 0 for loader in build.sections.values())

    # the catalog's save_args reach write_h5ad: raw_sections and sections uncompressed
    for folder in ("02_intermediate", "03_primary"):
        with h5py.File(tiny_her2st.parent / f"project/data/{folder}/sections/A1.h5ad") as f:
            assert f["X/data"].compression is None
    path = tiny_her2st.parent / "gzip.h5ad"
    AnnDataDataset(str(path)).save(full)  # the dataset's default: gzip level 1
    with h5py.File(path) as f:
        assert f["X/data"].compression == "gzip" and f["X/data"].compression_opts == 1
