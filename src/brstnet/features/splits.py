"""Patient-level splits, stored as data: one row per (fold, inner fold, section).

Columns: ``fold``, ``inner_fold``, ``role``, ``dataset``, ``patient``, ``person``,
``section``. Rows with ``inner_fold == -1`` are the outer split (role ``train`` or
``test``); rows with ``inner_fold >= 0`` split that fold's training sections into
``train`` and ``val`` for epoch selection.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .identities import person_id

logger = logging.getLogger(__name__)

OUTER = -1
COLUMNS = ["fold", "inner_fold", "role", "dataset", "patient", "person", "section"]


class LeakageError(ValueError):
    """A person sits on two sides of a split."""


def section_table(sections: pd.DataFrame) -> pd.DataFrame:
    """Add the cross-data-set ``person`` to a (dataset, patient, section) table."""
    columns = ["dataset", "patient", "section"] + (
        ["subtype"] if "subtype" in sections.columns else []
    )
    out = sections[columns].drop_duplicates().sort_values(["dataset", "patient", "section"])
    out["person"] = [person_id(d, p) for d, p in zip(out["dataset"], out["patient"], strict=True)]
    return out.reset_index(drop=True)


def _groups_kfold(
    groups: Sequence[str], k: int, rng: np.random.Generator, strata: dict[str, str] | None = None
) -> list[list[str]]:
    """Shuffle groups into k folds; with ``strata`` (group -> stratum) each stratum is
    dealt round-robin over the folds, so every fold gets its share of every stratum."""
    groups = list(groups)
    if k > len(groups):
        raise ValueError(f"k = {k} folds need at least {k} groups, got {len(groups)}: {groups}")
    if strata is None:
        order = [groups[i] for i in rng.permutation(len(groups))]
    else:
        order = []
        for stratum in sorted({strata[g] for g in groups}):
            members = [g for g in groups if strata[g] == stratum]
            order += [members[i] for i in rng.permutation(len(members))]
    return [sorted(order[i::k]) for i in range(k)]


def outer_folds(
    table: pd.DataFrame,
    *,
    scheme: str,
    k: int,
    test_patients: Sequence[str],
    seed: int,
    stratify: bool = False,
) -> list[list[str]]:
    """Test persons of each outer fold (k-fold optionally stratified by ``subtype``)."""
    persons = sorted(table["person"].unique())
    if scheme == "lopo":
        if len(persons) < 2:
            raise ValueError(
                f"leave-one-patient-out needs at least 2 patients; the sections "
                f"{sorted(table['section'])} are all of patient "
                f"{', '.join(sorted(table['patient'].unique()))}: add sections of another "
                "patient to data_processing.sections"
            )
        return [[p] for p in persons]
    if scheme == "kfold":
        strata = None
        if stratify:
            if "subtype" not in table.columns or table["subtype"].isna().any():
                raise ValueError(
                    "stratify needs a subtype for every section (he2020 metadata.csv 'type')"
                )
            strata = dict(zip(table["person"], table["subtype"].astype(str), strict=True))
        return _groups_kfold(persons, k, np.random.default_rng(seed), strata)
    if scheme == "fixed":
        wanted = set(test_patients)
        chosen = sorted(
            {r.person for r in table.itertuples() if r.patient in wanted or r.person in wanted}
        )
        unknown = wanted - set(table["patient"]) - set(table["person"])
        if unknown or not chosen:
            raise ValueError(
                f"test_patients {sorted(unknown or wanted)} are not among the patients {sorted(table['patient'].unique())}"
            )
        return [chosen]
    raise ValueError(f"unknown split scheme {scheme!r}; use lopo, kfold or fixed")


def inner_folds(
    train: pd.DataFrame, *, scheme: str, k: int, val_fraction: float, seed: int, fold: int
) -> tuple[str, list[list[str]]]:
    """Validation groups of each inner fold, by person, or by section with one person."""
    by = "person"
    groups = sorted(train["person"].unique())
    if len(groups) < 2:
        by = "section"
        groups = sorted(train["section"].unique())
        logger.warning(
            "fold %d: one training patient (%s); the inner split for epoch selection is by "
            "section, so validation sections share a patient with training sections",
            fold,
            train["patient"].iloc[0],
        )
        if len(groups) < 2:
            logger.warning(
                "fold %d: a single training section (%s) leaves nothing to validate on; this "
                "fold trains for the configured number of epochs without epoch selection",
                fold,
                groups[0],
            )
            return by, []
    rng = np.random.default_rng(seed + fold)
    if scheme == "holdout":
        n_val = min(len(groups) - 1, max(1, int(round(val_fraction * len(groups)))))
        return by, [sorted(groups[i] for i in rng.permutation(len(groups))[:n_val])]
    if scheme == "kfold":
        return by, _groups_kfold(groups, min(k, len(groups)), rng)
    raise ValueError(f"unknown inner split scheme {scheme!r}; use holdout or kfold")


def make_splits(
    sections: pd.DataFrame,
    *,
    scheme: str = "lopo",
    k: int = 5,
    test_patients: Sequence[str] = (),
    inner_scheme: str = "holdout",
    inner_k: int = 4,
    val_fraction: float = 0.25,
    seed: int = 0,
    stratify: bool = False,
) -> pd.DataFrame:
    """Build the split table (see module docstring) and check it for leakage.

    Args:
        sections: One row per section with columns dataset, patient, section (and
            subtype, for ``stratify``: k-fold folds balanced over subtypes).
    """
    table = section_table(sections)
    rows = []
    for fold, test in enumerate(
        outer_folds(
            table, scheme=scheme, k=k, test_patients=test_patients, seed=seed, stratify=stratify
        )
    ):
        is_test = table["person"].isin(test)
        if is_test.all():
            raise ValueError(
                f"fold {fold}: every patient is a test patient; nothing is left to train on: "
                "add sections of other patients to data_processing.sections, or name fewer "
                "feature_selection.split.test_patients"
            )
        for role, part in (("test", table[is_test]), ("train", table[~is_test])):
            rows.append(part.assign(fold=fold, inner_fold=OUTER, role=role))
        train = table[~is_test]
        by, vals = inner_folds(
            train, scheme=inner_scheme, k=inner_k, val_fraction=val_fraction, seed=seed, fold=fold
        )
        for inner, val in enumerate(vals):
            is_val = train[by].isin(val)
            rows.append(train[is_val].assign(fold=fold, inner_fold=inner, role="val"))
            rows.append(train[~is_val].assign(fold=fold, inner_fold=inner, role="train"))
    out = (
        pd.concat(rows, ignore_index=True)[COLUMNS]
        .sort_values(["fold", "inner_fold", "role", "section"])
        .reset_index(drop=True)
    )
    check_splits(out)
    return out


def check_splits(splits: pd.DataFrame) -> None:
    """Refuse any outer fold where a person is both trained on and tested on.

    Inner folds may share a person between train and val only when the fold has a
    single training person (the by-section fallback).

    Raises:
        LeakageError: naming the fold and the person.
    """
    for (fold, inner), part in splits.groupby(["fold", "inner_fold"]):
        sides = part.groupby("person")["role"].agg(lambda r: sorted(set(r)))
        mixed = sides[sides.map(len) > 1]
        if inner == OUTER and len(mixed):
            person = mixed.index[0]
            names = sorted(part.loc[part["person"] == person, "patient"].unique())
            raise LeakageError(
                f"fold {fold}: person {person} (patients {names}) is on both sides ({mixed.iloc[0]}); "
                "a patient's sections must all be train or all be test"
            )
        if (
            inner != OUTER
            and len(mixed)
            and part.loc[part["role"] != "test", "person"].nunique() > 1
        ):
            raise LeakageError(
                f"fold {fold}, inner fold {inner}: person {mixed.index[0]} is in both train and val"
            )
    for fold, part in splits[splits["inner_fold"] == OUTER].groupby("fold"):
        test = set(part.loc[part["role"] == "test", "section"])
        inner = splits[(splits["fold"] == fold) & (splits["inner_fold"] != OUTER)]
        if test & set(inner["section"]):
            raise LeakageError(
                f"fold {fold}: test sections {sorted(test & set(inner['section']))} appear in its inner split"
            )


def fold_sections(splits: pd.DataFrame, fold: int, role: str) -> list[str]:
    """Sections of one outer fold on one side of its split.

    Args:
        splits: The split table (see module docstring).
        fold: Outer fold number.
        role: ``train`` or ``test``.

    Returns:
        Section names, sorted.
    """
    part = splits[
        (splits["fold"] == fold) & (splits["inner_fold"] == OUTER) & (splits["role"] == role)
    ]
    return sorted(part["section"])


def fold_patients(splits: pd.DataFrame, fold: int, role: str) -> list[str]:
    """Patients of one outer fold on one side of its split (``train`` or ``test``), sorted."""
    part = splits[
        (splits["fold"] == fold) & (splits["inner_fold"] == OUTER) & (splits["role"] == role)
    ]
    return sorted(part["patient"].unique().tolist())


def fold_patient_lists(splits: pd.DataFrame, fold: int) -> dict[str, list[str]]:
    """``train_patients`` and ``test_patients`` of one outer fold (a bundle records both)."""
    return {f"{role}_patients": fold_patients(splits, fold, role) for role in ("train", "test")}
