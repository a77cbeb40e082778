"""Patient splits: schemes, the by-section fallback, and the leakage refusal."""

from __future__ import annotations

import pandas as pd
import pytest

from brstnet.features.identities import person_id
from brstnet.features.splits import OUTER, LeakageError, check_splits, make_splits


def _sections(spec: dict[str, list[str]], dataset: str = "her2st") -> pd.DataFrame:
    return pd.DataFrame(
        [{"dataset": dataset, "patient": p, "section": s} for p, ss in spec.items() for s in ss]
    )


def _outer(splits: pd.DataFrame, fold: int, role: str) -> set[str]:
    part = splits[
        (splits["fold"] == fold) & (splits["inner_fold"] == OUTER) & (splits["role"] == role)
    ]
    return set(part["patient"])


def test_leave_one_patient_out() -> None:
    splits = make_splits(_sections({"A": ["A1", "A2"], "B": ["B1"], "C": ["C1", "C2"]}))
    assert sorted(splits["fold"].unique()) == [0, 1, 2]
    for fold, held_out in enumerate("ABC"):
        assert _outer(splits, fold, "test") == {held_out}
        assert _outer(splits, fold, "train") == set("ABC") - {held_out}
        inner = splits[(splits["fold"] == fold) & (splits["inner_fold"] == 0)]
        # two training patients: one for validation, one for training, by patient
        assert len(set(inner.loc[inner["role"] == "val", "patient"])) == 1
        assert not set(inner["patient"]) & {held_out}


def test_kfold_and_fixed() -> None:
    spec = {p: [f"{p}1"] for p in "ABCDEF"}
    splits = make_splits(_sections(spec), scheme="kfold", k=3)
    tests = [_outer(splits, f, "test") for f in range(3)]
    assert sorted(len(t) for t in tests) == [2, 2, 2] and set().union(*tests) == set("ABCDEF")
    fixed = make_splits(_sections(spec), scheme="fixed", test_patients=["B", "D"])
    assert _outer(fixed, 0, "test") == {"B", "D"} and _outer(fixed, 0, "train") == set("ACEF")
    with pytest.raises(ValueError, match=r"test_patients \['Z'\] are not among"):
        make_splits(_sections(spec), scheme="fixed", test_patients=["Z"])


def test_single_training_patient_falls_back_to_sections(caplog) -> None:
    splits = make_splits(_sections({"B": ["B4"], "C": ["C2", "C3", "C4", "C5"]}))
    assert (
        "one training patient (C); the inner split for epoch selection is by section" in caplog.text
    )
    inner = splits[(splits["fold"] == 0) & (splits["inner_fold"] == 0)]
    assert len(inner[inner["role"] == "val"]) == 1 and len(inner[inner["role"] == "train"]) == 3
    # fold 1 trains on B4 alone: nothing to validate on, said in the log
    assert not len(splits[(splits["fold"] == 1) & (splits["inner_fold"] >= 0)])
    assert "a single training section (B4) leaves nothing to validate on" in caplog.text


def test_a_patient_on_both_sides_is_refused() -> None:
    splits = make_splits(_sections({"A": ["A1", "A2"], "B": ["B1"]}))
    bad = splits.copy()
    row = bad.index[(bad["fold"] == 0) & (bad["inner_fold"] == OUTER) & (bad["section"] == "A2")][0]
    bad.loc[row, "role"] = "train" if bad.loc[row, "role"] == "test" else "test"
    with pytest.raises(
        LeakageError, match=r"fold 0: person her2st:A \(patients \['A'\]\) is on both sides"
    ):
        check_splits(bad)


def test_the_same_person_in_two_data_sets_stays_on_one_side() -> None:
    assert person_id("her2st", "E") == person_id("he2020", "BC23567") == "he2020:BC23567"
    assert person_id("her2st", "A") == "her2st:A"
    sections = pd.concat(
        [
            _sections({"E": ["E1", "E2"], "A": ["A1"]}),
            _sections({"BC23567": ["BC23567_C1"], "BC23810": ["BC23810_D1"]}, "he2020"),
        ]
    )
    splits = make_splits(sections)
    # four patients but three persons: her2st E and He et al. BC23567 are held out together
    assert splits["fold"].nunique() == 3
    for _, part in splits[splits["inner_fold"] == OUTER].groupby("fold"):
        test = set(part.loc[part["role"] == "test", "patient"])
        assert ("E" in test) == ("BC23567" in test)
    # a hand-made table that splits them is refused
    table = pd.DataFrame(
        {
            "fold": 0,
            "inner_fold": OUTER,
            "role": ["train", "test"],
            "dataset": ["her2st", "he2020"],
            "patient": ["E", "BC23567"],
            "person": [person_id("her2st", "E"), person_id("he2020", "BC23567")],
            "section": ["E1", "BC23567_C1"],
        }
    )
    with pytest.raises(
        LeakageError, match=r"person he2020:BC23567 \(patients \['BC23567', 'E'\]\)"
    ):
        check_splits(table)


def test_kfold_stratified_by_subtype() -> None:
    spec = {p: [f"{p}1"] for p in "ABCDEF"}
    sections = _sections(spec).assign(subtype=["TNBC", "TNBC", "TNBC", "LumA", "LumA", "LumA"])
    splits = make_splits(sections, scheme="kfold", k=3, stratify=True, seed=4)
    subtype = dict(zip(sections["patient"], sections["subtype"], strict=True))
    for fold in range(3):
        test = _outer(splits, fold, "test")
        assert sorted(subtype[p] for p in test) == ["LumA", "TNBC"]  # one of each in every fold
    with pytest.raises(ValueError, match="stratify needs a subtype for every section"):
        make_splits(_sections(spec), scheme="kfold", k=3, stratify=True)


def test_leave_one_patient_out_with_a_single_patient_says_what_to_change() -> None:
    """Failed before: 'fold 0: every patient is a test patient', and no way out."""
    with pytest.raises(
        ValueError,
        match=r"leave-one-patient-out needs at least 2 patients; the sections \['A1', 'A2'\] "
        r"are all of patient A: add sections of another patient to data_processing.sections",
    ):
        make_splits(_sections({"A": ["A1", "A2"]}))
