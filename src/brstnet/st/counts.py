"""Raw count tables and matrices, read fast and checked: integer, non-negative, one row
per spot, one column per gene (the errors name the file and section)."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import DataError


def read_count_table(path: str | Path, *, sep: str = "\t") -> pd.DataFrame:
    """A spots x genes count table as ``pd.read_csv(path, sep=sep, index_col=0)`` reads it,
    with the spot ids as strings.

    A table of plain integers (her2st, He et al.: ~300 spots x ~15,000 genes, gzip or not)
    is parsed by numpy in one pass, about 4x faster than pandas, which builds one column
    at a time; anything else (floats, empty cells, quotes, ragged rows, other
    compressions) is read by pandas, whose frame :func:`check_counts` then diagnoses.

    Raises:
        Exception: whatever ``pd.read_csv`` raises for the file.
    """
    path = Path(path)
    plain = path.suffix.lower() in (".gz", ".tsv", ".csv", ".txt")
    frame = _read_integer_table(path, sep) if plain else None
    if frame is None:
        frame = pd.read_csv(path, sep=sep, index_col=0)
        frame.index = frame.index.astype(str)
        # pandas renames a repeated gene name (CPSF3L, CPSF3L.1): keep the file's names, so
        # that shared names are reported (assemble_section) and not silently made distinct
        header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str).iloc[0]
        names = header.iloc[1:]
        if len(names) == frame.shape[1] and names.notna().all() and names.duplicated().any():
            frame.columns = pd.Index(names.tolist(), dtype=object)
    return frame


def _read_integer_table(path: Path, sep: str) -> pd.DataFrame | None:
    """The table parsed by numpy when every cell but the first column is an integer, else None."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return None
    if b'"' in raw or b"\r" in raw:  # quoting and CR line ends: pandas' rules
        return None
    head, _, body = raw.partition(b"\n")
    rows = [line for line in body.split(b"\n") if line]
    delimiter = sep.encode()
    if not rows or any(delimiter not in row for row in rows):
        return None
    names = head.decode().split(sep)
    genes = names[1:]
    if not genes or "" in genes:
        return None  # pandas names empty columns
    spots, _, cells = zip(*(row.partition(delimiter) for row in rows), strict=True)
    try:
        values = np.loadtxt(
            io.BytesIO(b"\n".join(cells)),
            delimiter=sep,
            dtype=np.int64,
            comments=None,
            ndmin=2,
        )
    except ValueError:  # a float, an empty cell, a word, a ragged row, an overflow
        return None
    if values.shape[1] != len(genes):
        return None
    return pd.DataFrame(
        values,
        index=pd.Index([s.decode() for s in spots], dtype=object, name=names[0] or None),
        columns=pd.Index(genes, dtype=object),
    )


def _no_spots(path: Path, section: str) -> DataError:
    return DataError(
        f"section {section}: count matrix {path} has no spots (a header only): the file is "
        "empty or truncated; replace it"
    )


def check_counts(frame: pd.DataFrame, path: Path, section: str) -> sp.csr_matrix:
    """Validate a spots x genes count table and return it as int32 CSR.

    Raises:
        DataError: non-numeric, non-integer, negative or too large counts (names the file).
    """
    if frame.shape[0] == 0:
        raise _no_spots(path, section)
    dtypes = frame.dtypes
    non_numeric = (
        []
        if all(pd.api.types.is_numeric_dtype(t) for t in set(dtypes))
        else [c for c, t in dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    )
    if non_numeric:
        msg = f"section {section}: count matrix {path} has non-numeric columns {non_numeric[:5]}; counts must be integers"
        raise DataError(msg)
    values = frame.to_numpy()
    return check_count_matrix(
        sp.csr_matrix(values) if values.size else sp.csr_matrix(values.shape),
        path,
        section,
        frame.index,
        frame.columns,
    )


def check_count_matrix(
    counts: sp.spmatrix, path: Path, section: str, spots: pd.Index, genes: pd.Index
) -> sp.csr_matrix:
    """One row per spot; integer, non-negative, int32-sized counts; else a DataError
    naming the file (and the spot and gene where there is one)."""
    if not spots.is_unique:
        msg = (
            f"section {section}: count matrix {path} lists spot {spots[spots.duplicated()][0]} "
            "twice; a count matrix holds one row per spot: replace the file"
        )
        raise DataError(msg)
    counts = sp.csr_matrix(counts)
    if counts.shape[0] == 0:
        raise _no_spots(path, section)
    data = counts.data
    for bad, what in ((np.isnan, "NaN (an empty or NA cell)"), (np.isinf, "an infinite value")):
        if bad(data).any():
            coo = counts.tocoo()
            first = np.flatnonzero(bad(coo.data))[0]
            msg = (
                f"section {section}: count matrix {path} holds {what} at spot "
                f"{spots[coo.row[first]]}, gene {genes[coo.col[first]]}; counts must be "
                "integers: fill missing counts with 0, or replace the file"
            )
            raise DataError(msg)
    if (data != np.round(data)).any():
        msg = f"section {section}: count matrix {path} holds non-integer values; give raw UMI counts, not normalised expression"
        raise DataError(msg)
    if (data < 0).any():
        coo = counts.tocoo()
        first = np.flatnonzero(coo.data < 0)[0]
        msg = (
            f"section {section}: count matrix {path} holds negative counts "
            f"(spot {spots[coo.row[first]]}, gene {genes[coo.col[first]]}); counts must be >= 0"
        )
        raise DataError(msg)
    if data.size and data.max() > np.iinfo(np.int32).max:
        raise DataError(f"section {section}: counts in {path} exceed the int32 range")
    return counts.astype(np.int32)
