"""De-identification of one instance: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile by
Orthanc's own anonymization (``POST /instances/{id}/anonymize``, profile 2021b, which answers the new file without
storing it), then nmdose's keyed changes on the answer (pydicom):

- **Pseudonyms**: PatientID and PatientName become ``P`` + 16 hex digits of HMAC-SHA256 under the project's key,
  itself HMAC(pseudonym key of the secret store, project name): one patient gets one pseudonym in every export of
  a project and unrelated ones in two projects (or in the dose schema, whose pseudonyms use the key directly).
- **UIDs**: every UID that is not a standard one (the DICOM root ``1.2.840.10008.``, class and coding-scheme
  UIDs) becomes ``2.25.`` + a number from HMAC(project key, UID), top level and nested alike (the SR's references,
  the Device Observer UID): the copy's studies keep their structure, an export run twice writes the same
  instances (the pseudoPACS stores nothing twice), and no UID of the copy leads back to the original.
- **Dates**: ``keep`` (PS3.15 Retain Longitudinal Temporal Information with Full Dates Option) or ``shift``
  (Modified Dates Option; the default): every DA and DT value, nested ones too (the radiopharmaceutical start time,
  the irradiation events' times), moves by one number of days per patient, from HMAC(project key, PatientID)
  (1 to 365 days into the past), so intervals between a patient's studies stay true. Times of day are kept.
- **Dose attributes** (``keep_dose``, default on): the SR content (TID 10011/10021), the
  RadiopharmaceuticalInformationSequence and the patient's age, sex, weight and height are kept (the profile
  removes them), so the copy gives the same dose numbers. Names of persons inside the kept content (the observer,
  who proceeded past a dose check) are emptied.

Nothing here does I/O.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pydicom
from pydicom.dataset import Dataset

DatesOption = Literal["keep", "shift"]
DICOM_VERSION = "2021b"  # the PS3.15 Table E.1-1 edition of Orthanc's basic profile (Orthanc >= 1.9.4)
STANDARD_UID_ROOT = "1.2.840.10008."
# UIDs that name a class, a syntax or a coding scheme, not an object: never remapped (a vendor's private SOP
# class is not under the DICOM root)
CLASS_UID_KEYWORDS = frozenset({
    "SOPClassUID", "ReferencedSOPClassUID", "ReferencedSOPClassUIDInFile", "MediaStorageSOPClassUID",
    "AffectedSOPClassUID", "RequestedSOPClassUID", "TransferSyntaxUID", "ReferencedTransferSyntaxUIDInFile",
    "ImplementationClassUID", "CodingSchemeUID", "ContextUID", "MappingResourceUID", "TemplateExtensionCreatorUID",
    "ContextGroupExtensionCreatorUID", "PrivateInformationCreatorUID", "SOPClassesInStudy",
    "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID",
})  # fmt: skip
KEEP_UIDS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"]  # mapped by us
DATE_TAGS = [
    "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AcquisitionDateTime", "StudyTime", "SeriesTime",
    "AcquisitionTime", "ContentTime",
]  # fmt: skip
DOSE_TAGS = [
    "ContentSequence", "RadiopharmaceuticalInformationSequence", "PatientAge", "PatientSex", "PatientWeight",
    "PatientSize", "ConceptNameCodeSequence", "ContentTemplateSequence", "CompletionFlag", "VerificationFlag",
    "ValueType", "ContinuityOfContent", "Manufacturer", "ManufacturerModelName", "DeviceSerialNumber",
    "SoftwareVersions", "StudyDescription", "SeriesDescription", "ProtocolName",
]  # fmt: skip
SHIFT_MIN_DAYS, SHIFT_MAX_DAYS = 1, 365


@dataclass(frozen=True)
class Options:
    dates: DatesOption = "shift"
    keep_dose: bool = True


def project_key(pseudonym_key: str, project: str) -> bytes:
    """The project's own key: HMAC-SHA256(the store's pseudonym key, "nmdose-project\\0" + project)."""
    return hmac.new(pseudonym_key.encode(), b"nmdose-project\0" + project.encode(), hashlib.sha256).digest()


def _mac(key: bytes, kind: str, value: str) -> bytes:
    return hmac.new(key, kind.encode() + b"\0" + value.encode(), hashlib.sha256).digest()


def _clean_id(patient_id: str | None) -> str:
    return (patient_id or "").replace("\x00", "").strip()


def pseudonym(key: bytes, patient_id: str | None) -> str:
    """``P`` + 16 upper-case hex digits: the patient's ID and name in the project's copies."""
    return "P" + _mac(key, "patient", _clean_id(patient_id)).hex()[:16].upper()


def shift_days(key: bytes, patient_id: str | None) -> int:
    """Days the patient's dates move back (1 to 365), one number per patient and project."""
    n = int.from_bytes(_mac(key, "date-shift", _clean_id(patient_id))[:8], "big")
    return -(SHIFT_MIN_DAYS + n % (SHIFT_MAX_DAYS - SHIFT_MIN_DAYS + 1))


def map_uid(key: bytes, uid: str) -> str:
    """``2.25.`` + a 128-bit number from HMAC(project key, UID) (PS3.5 B.2: a UUID-derived UID, ≤ 44 chars)."""
    return "2.25." + str(int.from_bytes(_mac(key, "uid", uid.strip())[:16], "big"))


def anonymize_request(patient_pseudonym: str, options: Options) -> dict:
    """The body of Orthanc's ``POST /instances/{id}/anonymize``."""
    keep = list(KEEP_UIDS) + DATE_TAGS + (DOSE_TAGS if options.keep_dose else [])
    return {
        "Replace": {"PatientID": patient_pseudonym, "PatientName": patient_pseudonym},
        "Keep": keep,
        "KeepPrivateTags": False,
        "Force": True,  # PatientID and the kept UIDs: Orthanc asks to confirm
        "DicomVersion": DICOM_VERSION,
    }


# CID 7050 De-identification Method (DCM codes, PS3.16): what the copy says was done
METHOD_CODES = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "keep": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "shift": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "patient": ("113108", "Retain Patient Characteristics Option"),
    "device": ("113109", "Retain Device Identity Option"),
}


def method_codes(options: Options) -> list[tuple[str, str]]:
    """The CID 7050 codes of a copy made with `options`."""
    keys = ["basic", options.dates] + (["patient", "device"] if options.keep_dose else [])
    return [METHOD_CODES[k] for k in keys]


def _code(code: tuple[str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code[0], "DCM", code[1]
    return item


def _shift_da(value: str, days: int) -> str:
    text = value.strip()
    if len(text) < 8 or not text[:8].isdigit():
        return value
    try:
        day = _dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return value
    return (day + _dt.timedelta(days=days)).strftime("%Y%m%d") + text[8:]


def _walk(ds: Dataset, visit: Callable[[Dataset, pydicom.DataElement, int], None], depth: int = 0) -> None:
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                _walk(item, visit, depth + 1)
        else:
            visit(ds, elem, depth)


def transform(data: bytes, key: bytes, patient_id: str, options: Options) -> tuple[bytes, dict[str, str]]:
    """The file Orthanc anonymized, with nmdose's keyed changes (module docstring). Returns (bytes, facts):
    facts has the copy's study_instance_uid, sop_instance_uid and pseudonym."""
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    days = shift_days(key, patient_id) if options.dates == "shift" else 0
    alias = pseudonym(key, patient_id)

    def visit(parent: Dataset, elem: pydicom.DataElement, depth: int) -> None:
        if elem.VR == "UI" and elem.keyword not in CLASS_UID_KEYWORDS and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            mapped = [v if str(v).startswith(STANDARD_UID_ROOT) else map_uid(key, str(v)) for v in values]
            elem.value = mapped if elem.VM > 1 else mapped[0]
        elif elem.VR in ("DA", "DT") and days and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            shifted = [_shift_da(str(v), days) for v in values]
            elem.value = shifted if elem.VM > 1 else shifted[0]
        elif elem.VR == "PN" and depth > 0 and elem.value:
            elem.value = ""  # a person named inside the kept content (observer, who proceeded)

    _walk(ds, visit)
    ds.PatientID = alias
    ds.PatientName = alias
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if days else "UNMODIFIED"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [  # LO, 64 characters a value
        "PS 3.15 Basic Application Level Confidentiality Profile",
        f"Orthanc anonymization, profile {DICOM_VERSION}",
        "nmdose: keyed pseudonyms and UIDs",
        "nmdose: dates shifted per patient" if days else "nmdose: dates kept",
        *(["nmdose: dose attributes kept"] if options.keep_dose else []),
    ]
    ds.DeidentificationMethodCodeSequence = [_code(c) for c in method_codes(options)]
    if ds.file_meta is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if "MediaStorageSOPClassUID" not in ds.file_meta and "SOPClassUID" in ds:
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), {
        "study_instance_uid": str(ds.StudyInstanceUID),
        "sop_instance_uid": str(ds.SOPInstanceUID),
        "pseudonym": alias,
    }
