"""Known patient identities across data sets.

The same person can appear in two public data sets under two names. A split must treat
them as one patient, or a model is tested on a person it was trained on.
"""

from __future__ import annotations

#: (dataset, patient) -> person. her2st patients E-H are He et al. 2020 patients
#: BC23567, BC23810, BC23903, BC24044 (Andersson et al. 2021; SCIENCE.md).
SAME_PERSON: dict[tuple[str, str], str] = {
    ("her2st", "E"): "he2020:BC23567",
    ("her2st", "F"): "he2020:BC23810",
    ("her2st", "G"): "he2020:BC23903",
    ("her2st", "H"): "he2020:BC24044",
}


def person_id(dataset: str, patient: str) -> str:
    """A data-set-independent identity for a patient (``"dataset:patient"`` unless known)."""
    return SAME_PERSON.get((dataset, patient), f"{dataset}:{patient}")
