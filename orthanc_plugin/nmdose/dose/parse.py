"""``parse_file``: one DICOM file to the dose JSON contract (issue 6 item 5), never raising.

It reads the header once (``stop_before_pixels``), decides what the object is (CT dose SR, radiopharmaceutical
dose SR, PET/NM image, Philips dose screen, anything else) and hands it to the reader named after what it reads.
A file that cannot be read, or whose UIDs are not DICOM UIDs, gives ``status: "error"`` with a message naming the
file and what failed; an object that holds no dose gives ``status: "not_dose"``. Text is bounded (dose/bounds.py).
"""

from __future__ import annotations

import os
from typing import Any

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from nmdose.dicom_file import read_header
from nmdose.dicom_sr import item_text, sequence_items, walk
from nmdose.dose import codes as C
from nmdose.dose.bounds import bad_uid, truncate_text
from nmdose.dose.ct_radiation_dose import is_ct_dose_report, read_ct_radiation_dose
from nmdose.dose.dose_screen import is_dose_screen, read_dose_screen
from nmdose.dose.header import get_value
from nmdose.dose.merge import merge_study
from nmdose.dose.nm_image_header import read_nm_image_header
from nmdose.dose.pet_image_header import read_pet_image_header
from nmdose.dose.protocol import read_protocol
from nmdose.dose.radiopharmaceutical_dose import read_radiopharmaceutical_dose
from nmdose.dose.result import Report, empty_result, iso_date

XRAY_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
RADIOPHARMACEUTICAL_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.68"
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
PET_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.130", "1.2.840.10008.5.1.4.1.1.128.1"}
)
NM_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.5"})
LATIN1_DECLARATIONS = frozenset({"", "ISO_IR 100", "ISO 2022 IR 100", "ISO_IR 6", "ISO 2022 IR 6"})
K_CT_TITLE = C.XRayRadiationDoseReport.key
K_RRDSR_TITLE = C.RadiopharmaceuticalRadiationDoseReport.key
TEMPLATE_BY_TITLE = {K_CT_TITLE: "10011", K_RRDSR_TITLE: "10021"}

__all__ = ["parse_file", "parse_dataset", "merge_study"]


def parse_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse one file into the contract; any failure becomes ``status: "error"`` naming the file."""
    file = os.fspath(path)
    result = empty_result(file)
    try:
        ds = read_header(file)
    except InvalidDicomError as exc:
        return _error(result, f"{file}: not a DICOM Part 10 file ({exc})")
    except FileNotFoundError:
        return _error(result, f"{file}: no such file")
    except Exception as exc:  # truncated files, broken element lengths...
        return _error(result, f"{file}: cannot be read by pydicom: {type(exc).__name__}: {exc}")
    return parse_dataset(ds, file, result)


def parse_dataset(ds: Dataset, file: str, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parse an already-read dataset (the Orthanc hook path reads from memory)."""
    result = result if result is not None else empty_result(file)
    concept = "header"
    try:
        charset = _charset(ds)
        report = Report(file, charset_fix=charset in LATIN1_DECLARATIONS)
        concept = "header"
        _header(ds, result, report)
        concept = "classification"
        if result["sop_class_uid"] is None and result["modality"] is None:
            return _error(
                result, f"{file}: no SOP Class UID (0008,0016) nor Modality: not a usable DICOM object"
            )
        sop = result["sop_class_uid"] or ""
        modality = result["modality"] or ""
        if sop.startswith(SR_PREFIX) or modality == "SR":
            concept = "SR content tree"
            _structured_report(ds, sop, result, report)
        elif sop in PET_CLASSES or (modality == "PT" and not sop.startswith(SR_PREFIX)):
            concept = "PET RadiopharmaceuticalInformationSequence"
            result["kind"] = "pet_image"
            result["radiopharmaceutical"] = read_pet_image_header(ds, report)
        elif sop in NM_CLASSES or modality == "NM":
            concept = "NM RadiopharmaceuticalInformationSequence"
            result["kind"] = "nm_image"
            result["radiopharmaceutical"] = read_nm_image_header(ds, report)
        elif is_dose_screen(ds):
            concept = "ExposureDoseSequence (dose screen)"
            result["kind"] = "ct_dose_screen"
            result["ct"] = read_dose_screen(ds, report)
        else:
            result["status"] = "not_dose"
        concept = "bounds"
        problem = bad_uid(result)
        if problem:
            return _error(result, f"{file}: {problem}")
        result.update(truncate_text(result, report.warn))
        result["warnings"] = report.warnings
    except Exception as exc:  # a reader bug or a value pydicom cannot decode: one file fails, never the batch
        return _error(result, f"{file}: {concept}: {type(exc).__name__}: {exc}")
    return result


def _error(result: dict[str, Any], message: str) -> dict[str, Any]:
    result["status"] = "error"
    result["error"] = message
    return result


def _charset(ds: Dataset) -> str:
    value = get_value(ds, "SpecificCharacterSet")
    if not value:
        return ""
    if isinstance(value, str):
        return value.strip()
    return str(value[0]).strip() if len(value) == 1 else "multi"


def _get(ds: Dataset, keyword: str) -> Any:
    return get_value(ds, keyword)


def _header(ds: Dataset, result: dict[str, Any], report: Report) -> None:
    text = report.text
    result["sop_class_uid"] = text(_get(ds, "SOPClassUID"), "SOP Class UID")
    result["sop_instance_uid"] = text(_get(ds, "SOPInstanceUID"), "SOP Instance UID")
    result["study_instance_uid"] = text(_get(ds, "StudyInstanceUID"), "Study Instance UID")
    result["series_instance_uid"] = text(_get(ds, "SeriesInstanceUID"), "Series Instance UID")
    result["modality"] = text(_get(ds, "Modality"), "Modality")
    result["manufacturer"] = text(_get(ds, "Manufacturer"), "Manufacturer")
    result["model_name"] = text(_get(ds, "ManufacturerModelName"), "Manufacturer's Model Name")
    result["station_name"] = text(_get(ds, "StationName"), "Station Name")
    result["device_serial_number"] = text(_get(ds, "DeviceSerialNumber"), "Device Serial Number")
    result["study_date"] = iso_date(_get(ds, "StudyDate"))
    result["study_description"] = text(_get(ds, "StudyDescription"), "Study Description (0008,1030)")
    result["accession_number"] = text(_get(ds, "AccessionNumber"), "Accession Number")
    result["protocol"] = read_protocol(ds, report)
    patient = result["patient"]
    patient["age_years"] = _age_years(_get(ds, "PatientAge"), report)
    sex = str(_get(ds, "PatientSex") or "").strip().upper()
    patient["sex"] = sex if sex in ("M", "F", "O") else None
    weight = report.number(_get(ds, "PatientWeight"), "Patient's Weight (0010,1030)")
    patient["weight_kg"] = (
        None if not weight else report.plausible(weight, "kg", "Patient's Weight (0010,1030)")
    )
    size = report.number(_get(ds, "PatientSize"), "Patient's Size (0010,1020)")
    if size and 3.0 < size < 300.0:
        report.warn(
            "Patient's Size (0010,1020)", f"{size:g} looks like cm, not m as PS3.3 says; divided by 100"
        )
        size = size / 100.0
    patient["height_m"] = None if not size else report.plausible(size, "m", "Patient's Size (0010,1020)")
    if result["sop_instance_uid"] is None:
        report.warn("SOP Instance UID (0008,0018)", "missing")
    if result["study_instance_uid"] is None:
        report.warn("Study Instance UID (0020,000D)", "missing; this object cannot be merged into a study")


def _age_years(value: Any, report: Report) -> float | None:
    """PatientAge ``nnnY|M|W|D`` in years."""
    if not value:
        return None
    s = str(value).strip().upper()
    per_year = {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}
    if len(s) >= 2 and s[:-1].isdigit() and s[-1] in per_year:
        return round(int(s[:-1]) / per_year[s[-1]], 3)
    if s.isdigit():
        return float(int(s))
    report.warn("Patient's Age (0010,1010)", f"not an age string {s!r}; not stored")
    return None


def _structured_report(ds: Dataset, sop: str, result: dict[str, Any], report: Report) -> None:
    root = walk(ds)
    title = root.concept
    if sop == RADIOPHARMACEUTICAL_RADIATION_DOSE_SR or title == K_RRDSR_TITLE:
        if title != K_RRDSR_TITLE:
            report.warn(
                "Document title", f"{title or 'none'} instead of (113500, DCM) in a radiopharmaceutical SR"
            )
        result["kind"] = "radiopharmaceutical_rdsr"
        _check_template(ds, title, report)
        administrations, patient = read_radiopharmaceutical_dose(root, report)
        result["radiopharmaceutical"] = administrations
        for key, value in patient.items():
            if result["patient"][key] is None:
                result["patient"][key] = value
        return
    if title == K_CT_TITLE:
        if not is_ct_dose_report(root):
            result["status"] = "not_dose"
            report.warn(
                "X-Ray Radiation Dose Report", "no CT content (projection X-ray, TID 10001): not read"
            )
            return
        result["kind"] = "ct_rdsr" if sop == XRAY_RADIATION_DOSE_SR else "ct_esr"
        _check_template(ds, title, report)
        result["ct"] = read_ct_radiation_dose(root, report)
        return
    if sop == XRAY_RADIATION_DOSE_SR:
        report.warn(
            "Document title", f"{title or 'none'} instead of (113701, DCM) in an X-Ray Radiation Dose SR"
        )
    result["status"] = "not_dose"


_CONTENT_TEMPLATE_SEQUENCE = 0x0040A504
_TEMPLATE_IDENTIFIER = 0x0040DB00


def _check_template(ds: Dataset, title: str, report: Report) -> None:
    try:  # read from the raw bytes like the content tree (pydicom's sequence conversion is slow)
        seq = sequence_items(ds, _CONTENT_TEMPLATE_SEQUENCE)
        found = str(item_text(seq[0], _TEMPLATE_IDENTIFIER) or "").strip() if seq else ""
    except Exception:
        seq, found = None, ""
    expected = TEMPLATE_BY_TITLE.get(title)
    if not seq:
        report.warn(
            "ContentTemplateSequence (0040,A504)", f"missing; read as TID {expected} from the document title"
        )
        return
    if expected and found != expected:
        report.warn(
            "ContentTemplateSequence (0040,A504)",
            f"TID {found!r}, expected {expected}; read as TID {expected}",
        )
