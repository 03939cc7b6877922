"""Orthanc's public identifiers, computed without asking Orthanc.

Orthanc names a resource by the SHA-1 of its DICOM identifiers joined by ``|`` (Orthanc Book, "Orthanc
identifiers"), written as five dash-separated groups of eight hex digits. A study's is
``sha1("PatientID|StudyInstanceUID")``: the same study under another PatientID is another Orthanc resource.
"""

from __future__ import annotations

import hashlib


def orthanc_id(*dicom_ids: str) -> str:
    """Orthanc's identifier of the resource named by `dicom_ids` (patient; patient, study; …)."""
    digest = hashlib.sha1("|".join(dicom_ids).encode()).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def orthanc_study_id(patient_id: str, study_uid: str) -> str:
    """Orthanc's public identifier of a study: SHA-1 of ``PatientID|StudyInstanceUID`` in 5 dashed groups."""
    return orthanc_id(patient_id, study_uid)
