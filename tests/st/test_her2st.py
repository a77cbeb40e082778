"""Reading her2st sections, and a clear error for every kind of bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from brstnet.st import her2st
from brstnet.st.errors import DataError
from brstnet.st.her2st import locate_section, read_section
from tests.synthetic import GENES, PITCH_PX


def test_reads_a_tiny_section(tiny_her2st: Path) -> None:
    adata = read_section(locate_section(tiny_her2st, "A1"))
    counts = pd.read_csv(tiny_her2st / "data/ST-cnts/A1.tsv.gz", sep="\t", index_col=0)
    assert adata.shape == (12, len(GENES))
    assert sp.issparse(adata.X) and adata.X.dtype == np.int32
    np.testing.assert_array_equal(adata.X.toarray(), counts.to_numpy())
    assert list(adata.var_names) == list(GENES)
    assert adata.obs_names[0] == "A1_1x1"
    assert set(adata.obs["patient"]) == {"A"} and set(adata.obs["section"]) == {"A1"}
    np.testing.assert_allclose(
        adata.obsm["spatial"][0], [300 + 0.01 * PITCH_PX, 250 - 0.01 * PITCH_PX]
    )
    # 200 um pitch over 145 px
    assert adata.uns["pixel_size_um"] == pytest.approx(200 / PITCH_PX, rel=1e-6)
    np.testing.assert_array_equal(adata.obs["total_counts"], counts.sum(axis=1))


def test_pixel_size_can_be_given(tiny_her2st: Path) -> None:
    adata = read_section(locate_section(tiny_her2st, "A1"), pixel_size_um=0.5)
    assert adata.uns["pixel_size_um"] == 0.5


def test_unknown_section_lists_valid_names(tiny_her2st: Path) -> None:
    with pytest.raises(DataError, match=r"unknown her2st section 'Z9'.*A1, A2"):
        locate_section(tiny_her2st, "Z9")


def test_missing_image(tiny_her2st: Path) -> None:
    for image in (tiny_her2st / "data/ST-imgs/A/A1").iterdir():
        image.unlink()
    with pytest.raises(
        DataError, match=r"section A1: expected one H&E image in .*A1, found no image"
    ):
        locate_section(tiny_her2st, "A1")


def test_missing_count_matrix(tiny_her2st: Path) -> None:
    (tiny_her2st / "data/ST-cnts/A1.tsv.gz").unlink()
    with pytest.raises(DataError, match=r"section A1: count matrix .*A1.tsv.gz is missing"):
        locate_section(tiny_her2st, "A1")


def test_unreadable_image(tiny_her2st: Path) -> None:
    image = next((tiny_her2st / "data/ST-imgs/A/A1").iterdir())
    image.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"section A1: image .*HE_A1.jpg is not a readable image"):
        read_section(locate_section(tiny_her2st, "A1"))


def _rewrite_counts(root: Path, section: str, edit) -> None:
    path = root / f"data/ST-cnts/{section}.tsv.gz"
    frame = pd.read_csv(path, sep="\t", index_col=0)
    edit(frame).to_csv(path, sep="\t")


def test_spot_in_counts_but_not_in_spot_file(tiny_her2st: Path) -> None:
    _rewrite_counts(tiny_her2st, "A1", lambda f: f.rename(index={"1x1": "9x9"}))
    with pytest.raises(
        DataError,
        match=r"section A1: 1 spots in .*A1.tsv.gz are not in .*A1_selection.tsv.*\['9x9'\]",
    ):
        read_section(locate_section(tiny_her2st, "A1"))


def test_spot_file_spots_without_counts(tiny_her2st: Path) -> None:
    _rewrite_counts(tiny_her2st, "A1", lambda f: f.iloc[:6])
    with pytest.raises(
        DataError,
        match=r"section A1: 6 of 12 spots in .*A1_selection.tsv have no row in .*A1.tsv.gz",
    ):
        read_section(locate_section(tiny_her2st, "A1"))


def test_a_few_spot_file_spots_without_counts_are_dropped_with_a_warning(
    tiny_her2st: Path, caplog
) -> None:
    # the published files have 1-3 such spots per section
    _rewrite_counts(tiny_her2st, "A1", lambda f: f.drop(index="4x3"))
    adata = read_section(locate_section(tiny_her2st, "A1"), max_unmatched_fraction=0.1)
    assert adata.n_obs == 11
    assert "1 spot(s) of the spot file have no counts and are dropped: 4x3" in caplog.text


def test_spot_centre_outside_image(tiny_her2st: Path) -> None:
    path = tiny_her2st / "data/ST-spotfiles/A1_selection.tsv"
    spots = pd.read_csv(path, sep="\t")
    spots.loc[0, "pixel_x"] = 5000.0
    spots.to_csv(path, sep="\t", index=False)
    with pytest.raises(
        DataError, match=r"section A1: 1 spot centres in .* fall outside image .*\(1000 x 800 px\)"
    ):
        read_section(locate_section(tiny_her2st, "A1"))


def test_a_spot_without_a_pixel_position_names_section_and_file(tiny_her2st: Path) -> None:
    """Failed before: NaN pixel_x was accepted and failed later, in extract_patches,
    without naming the section or the file."""
    path = tiny_her2st / "data/ST-spotfiles/A1_selection.tsv"
    spots = pd.read_csv(path, sep="\t")
    spots.loc[2, "pixel_x"] = float("nan")
    spots.to_csv(path, sep="\t", index=False)
    spot = f"{spots.loc[2, 'x']}x{spots.loc[2, 'y']}"
    with pytest.raises(DataError) as err:
        read_section(locate_section(tiny_her2st, "A1"))
    assert str(err.value).startswith(
        f"section A1: 1 spot(s) in {path} have no finite pixel position (e.g. spot {spot} at (nan"
    )


@pytest.mark.parametrize("cells", ["integers", "floats"], ids=["numpy-path", "pandas-path"])
def test_a_gene_name_shared_by_two_columns_is_reported(
    tiny_her2st: Path, caplog, cells: str
) -> None:
    """Failed before: the parser renamed the second column (CPSF3L.1), so the warning
    that names shared gene names never fired."""
    first = pd.read_csv(tiny_her2st / "data/ST-cnts/A1.tsv.gz", sep="\t", index_col=0).columns[0]

    def twice(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.rename(columns={frame.columns[1]: first})
        return frame.astype(float) if cells == "floats" else frame  # 3.0: pandas reads it

    _rewrite_counts(tiny_her2st, "A1", twice)
    adata = read_section(locate_section(tiny_her2st, "A1"))
    assert f"1 gene names are shared by several features (e.g. {first})" in caplog.text
    assert list(adata.var_names[:2]) == [first, f"{first}-1"]  # anndata's suffix, reported


def test_non_integer_counts(tiny_her2st: Path) -> None:
    _rewrite_counts(tiny_her2st, "A1", lambda f: f.astype(float) + 0.5)
    with pytest.raises(
        DataError, match=r"section A1: count matrix .*A1.tsv.gz holds non-integer values"
    ):
        read_section(locate_section(tiny_her2st, "A1"))


def test_negative_counts(tiny_her2st: Path) -> None:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc["2x1", "GRB7"] = -3
        return frame

    _rewrite_counts(tiny_her2st, "A1", edit)
    with pytest.raises(DataError, match=r"negative counts \(spot 2x1, gene GRB7\)"):
        read_section(locate_section(tiny_her2st, "A1"))


def test_non_numeric_counts(tiny_her2st: Path) -> None:
    path = tiny_her2st / "data/ST-cnts/A1.tsv.gz"
    text = gzip.decompress(path.read_bytes()).decode().replace("\t", "\tn/a", 1)
    lines = text.splitlines()
    lines[1] = lines[1].split("\t", 1)[0] + "\tabc" + "\t1" * (len(GENES) - 1)
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    with pytest.raises(DataError, match="non-numeric columns"):
        read_section(locate_section(tiny_her2st, "A1"))


def test_patient_and_sections() -> None:
    assert len(her2st.SECTIONS) == 36
    assert her2st.patient_of("E2") == "E"


def _nan_at_3x2_actb(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype(float)
    frame.loc["3x2", "ACTB"] = np.nan
    return frame


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (  # failed before: the second row of spot 2x1 was read as another spot
            lambda f: pd.concat([f, f.loc[["2x1"]]]),
            r"lists spot 2x1 twice; a count matrix holds one row per spot: replace the file",
        ),
        (  # failed before: reported as a 'non-integer value'
            _nan_at_3x2_actb,
            r"holds NaN \(an empty or NA cell\) at spot 3x2, gene ACTB; .*fill missing counts "
            r"with 0",
        ),
        (  # failed before: reported as 'non-numeric columns', which it does not have
            lambda f: f.iloc[:0],
            r"has no spots \(a header only\): the file is empty or truncated; replace it",
        ),
    ],
    ids=["duplicated-spot", "nan", "header-only"],
)
def test_a_broken_count_table_names_file_spot_and_fix(
    tiny_her2st: Path, edit, message: str
) -> None:
    _rewrite_counts(tiny_her2st, "A1", edit)
    with pytest.raises(DataError, match=r"section A1: count matrix .*A1.tsv.gz " + message):
        read_section(locate_section(tiny_her2st, "A1"))


def test_a_pitch_that_is_not_positive(tiny_her2st: Path) -> None:
    """Failed before: a negative pitch gave a negative pixel size, silently."""
    from brstnet.st import readers

    for pitch in (-200.0, 0.0):
        with pytest.raises(
            DataError,
            match=rf"section A1: spot_pitch_um must be > 0 micrometres, got {pitch:g}; set "
            r"data_processing.spot_pitch_um to the spots' centre-to-centre distance",
        ):
            readers.read("her2st", tiny_her2st, "A1", spot_pitch_um=pitch)
