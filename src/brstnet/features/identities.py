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


#: HEST-1k studies that are other layouts' data sets: a HEST patient
#: "<dataset_title> / <patient>" (brstnet.st.hest.patient_key) is that layout's patient.
HEST_STUDIES: dict[str, str] = {
    "Integrating spatial gene expression and breast tumour morphology via deep learning": "he2020",
    "Spatial deconvolution of HER2-positive breast cancer delineates tumor-associated cell "
    "type interactions": "her2st",
}


def person_id(dataset: str, patient: str) -> str:
    """A data-set-independent identity for a patient (``"dataset:patient"`` unless known).

    HEST-1k's copies of He et al. 2020 (patients "BC23287", ...) and her2st ("Patient A",
    ...) are the persons of those layouts, so they meet her2st / he2020 sections, and
    each other, as one person.
    """
    if dataset == "hest":
        title, sep, name = patient.rpartition(" / ")
        if sep and title in HEST_STUDIES:
            dataset = HEST_STUDIES[title]
            patient = name.removeprefix("Patient ").strip() if dataset == "her2st" else name
    return SAME_PERSON.get((dataset, patient), f"{dataset}:{patient}")
