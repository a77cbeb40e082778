"""The faster readers give the numbers of the code they replace: pandas' count table,
Pillow's thumbnail."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brstnet.st.counts import _read_integer_table, read_count_table
from brstnet.st.slides import ArraySlide


def _pandas(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", index_col=0)
    frame.index = frame.index.astype(str)
    return frame


def _write(path: Path, text: str) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("name", ["counts.tsv.gz", "counts.tsv"])
def test_an_integer_table_reads_as_pandas_reads_it(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        rng.poisson(3, (7, 40)) - (np.arange(40) == 5),  # a negative count too
        index=[f"{x}x{x + 1}" for x in range(7)],
        columns=[f"G{k}" for k in range(40)],
    )
    path = tmp_path / name
    frame.to_csv(path, sep="\t")
    assert _read_integer_table(path, "\t") is not None  # numpy's path
    read = read_count_table(path)
    pd.testing.assert_frame_equal(read, _pandas(path))
    np.testing.assert_array_equal(read.to_numpy(), frame.to_numpy())
    assert list(read.index) == list(frame.index) and read.index.name is None


@pytest.mark.parametrize(
    "body",
    [
        "\tA\tB\ns1\t1\t2.5\ns2\t3\t4\n",  # a float
        "\tA\tB\ns1\t1\t\ns2\t3\t4\n",  # an empty cell
        "\tA\tB\ns1\t1\tn/a\ns2\t3\t4\n",  # a word
        '\tA\tB\n"s1"\t1\t2\ns2\t3\t4\n',  # quoting
        "\tA\tB\r\ns1\t1\t2\r\ns2\t3\t4\r\n",  # CR LF line ends
        "\tA\tB\n",  # a header only
        "\tA\tB\ns1\t1\t2\ns2\t3\n",  # a short row
    ],
    ids=["float", "empty", "word", "quotes", "crlf", "header", "ragged"],
)
def test_anything_else_is_read_by_pandas(tmp_path: Path, body: str) -> None:
    path = _write(tmp_path / "counts.tsv.gz", body)
    assert _read_integer_table(path, "\t") is None
    try:
        expected = _pandas(path)
    except pd.errors.ParserError as err:  # the error the readers report
        with pytest.raises(pd.errors.ParserError, match=str(err)[:20]):
            read_count_table(path)
    else:
        pd.testing.assert_frame_equal(read_count_table(path), expected)


@pytest.mark.parametrize("body", ["\tA\tA\ns1\t1\t2\ns2\t3\t4\n", "\tA\tA\ns1\t1.5\t2\ns2\t3\t4\n"])
def test_a_repeated_gene_keeps_its_name_on_both_paths(tmp_path: Path, body: str) -> None:
    """Unlike pandas (A, A.1): the shared name is then reported, not silently made unique."""
    read = read_count_table(_write(tmp_path / "counts.tsv.gz", body))
    assert list(read.columns) == ["A", "A"]
    pd.testing.assert_frame_equal(
        read.set_axis(["A", "A.1"], axis=1), _pandas(tmp_path / "counts.tsv.gz")
    )


def test_a_named_index_and_a_repeated_spot_read_as_pandas_reads_them(tmp_path: Path) -> None:
    path = _write(tmp_path / "counts.tsv", "spot\tA\tB\ns1\t1\t2\ns1\t3\t4\n")
    assert _read_integer_table(path, "\t") is not None
    read = read_count_table(path)
    pd.testing.assert_frame_equal(read, _pandas(path))
    assert read.index.name == "spot" and list(read.index) == ["s1", "s1"]


@pytest.mark.real_data
def test_the_real_count_tables_read_as_pandas_reads_them(her2st_dir: Path) -> None:
    for section in ("B4", "C2"):
        path = her2st_dir / f"data/ST-cnts/{section}.tsv.gz"
        read = read_count_table(path)
        assert read.shape[1] > 15_000
        pd.testing.assert_frame_equal(read, _pandas(path))


@pytest.mark.parametrize(
    ("height", "width", "factor"), [(2500, 1900, 2), (4800, 3000, 4), (1199, 700, 1), (3601, 20, 3)]
)
def test_an_in_memory_slides_thumbnail_samples_every_factor_th_pixel(
    height: int, width: int, factor: int
) -> None:
    """As a TIFF level is read: pixel (i, j) of the thumbnail is pixel (factor i, factor j)
    of the image, and the scale maps image pixels onto it."""
    rng = np.random.default_rng(height)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    thumb, scale = ArraySlide(image).thumbnail()
    assert scale == 1 / factor
    assert thumb.shape == (-(-height // factor), -(-width // factor), 3)
    assert thumb.flags.c_contiguous and np.shares_memory(thumb, image) == (factor == 1)
    i, j = rng.integers(0, thumb.shape[0], 50), rng.integers(0, thumb.shape[1], 50)
    np.testing.assert_array_equal(thumb[i, j], image[i * factor, j * factor])
