"""Gene identifiers: Ensembl ids or symbols, a user's id -> symbol map, one kind per run.

He et al. 2020 publishes Ensembl gene ids (``ENSG00000141736``, no version); her2st, Space
Ranger's feature names and most HEST-1k samples use symbols, but HEST-1k keeps He et al.'s
samples with their Ensembl ids. Sections whose genes are named in different kinds share
almost no gene names, so a run must not mix them: :func:`check_gene_names` refuses that
and names the fix (``data_processing.reader.gene_map``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from .errors import DataError

logger = logging.getLogger(__name__)

#: An Ensembl gene id (human ENSG, mouse ENSMUSG, ...), with an optional version suffix.
ENSEMBL_ID = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?$")


def unversioned(gene_id: str) -> str:
    """``ENSG00000141736.14`` -> ``ENSG00000141736``; anything else unchanged."""
    return gene_id.split(".")[0] if ENSEMBL_ID.match(gene_id) else gene_id


def gene_name_kind(genes: pd.Index | list[str]) -> str:
    """ "ensembl" when most names are Ensembl gene ids, else "symbol" (a few ids that a gene
    map left unmapped do not change the kind)."""
    genes = [str(g) for g in genes]
    share = sum(bool(ENSEMBL_ID.match(g)) for g in genes) / max(len(genes), 1)
    return "ensembl" if share > 0.5 else "symbol"


def read_gene_map(path: str | Path) -> dict[str, str]:
    """A two-column table (Ensembl gene id, symbol), tab- or comma-separated, header optional.

    Version suffixes are dropped from the ids, so versioned and unversioned ids both match.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"gene map {path} is missing; set data_processing.reader.gene_map to a two-column "
            "table (Ensembl gene id, symbol)"
        )
    table = pd.read_csv(path, sep=None, engine="python", header=None, dtype=str)
    if table.shape[1] < 2:
        raise DataError(f"gene map {path} needs two columns: Ensembl gene id and symbol")
    if not ENSEMBL_ID.match(str(table.iloc[0, 0])):
        table = table.iloc[1:]  # a header row
    table = table.dropna(subset=[table.columns[0], table.columns[1]])
    return {
        unversioned(str(i)): str(s) for i, s in zip(table.iloc[:, 0], table.iloc[:, 1], strict=True)
    }


def to_symbols(
    genes: pd.Index, gene_map: Mapping[str, str], *, section: str, source: str | Path
) -> pd.Index:
    """Ensembl ids in ``genes`` renamed to their symbols; ids the map lacks stay ids (logged)."""
    mapped = [gene_map.get(unversioned(str(g))) for g in genes]
    n_mapped = sum(m is not None for m in mapped)
    logger.info(
        "section %s: %d of %d gene ids mapped to symbols with %s",
        section,
        n_mapped,
        len(genes),
        source,
    )
    return pd.Index([m if m is not None else str(g) for m, g in zip(mapped, genes, strict=True)])


def check_gene_names(kinds: Mapping[str, str]) -> None:
    """Refuse a run whose sections name their genes in different kinds.

    Args:
        kinds: Section -> ``uns["gene_names"]`` ("symbol" or "ensembl").

    Raises:
        DataError: sections with Ensembl ids next to sections with symbols; lists them and
            names ``data_processing.reader.gene_map``.
    """
    by_kind: dict[str, list[str]] = {}
    for section, kind in kinds.items():
        by_kind.setdefault(kind, []).append(section)
    if len(by_kind) <= 1:
        return
    listing = "; ".join(f"{kind}: {sorted(names)}" for kind, names in sorted(by_kind.items()))
    raise DataError(
        f"the sections name their genes in different ways ({listing}), so they would share "
        "almost no gene: set data_processing.reader.gene_map to a two-column table (Ensembl "
        "gene id, symbol) that maps the ids to symbols, or read sections of one kind only"
    )
