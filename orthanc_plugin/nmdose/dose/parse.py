"""``parse_file``: one DICOM file to the dose JSON contract (issue 6 item 5), never raising.

It reads the header once (``stop_before_pixels``), decides what the object is (CT dose SR, radiopharmaceutical
dose SR, PET/NM image, Philips dose screen, anything else) and hands it to the reader named after what it reads.
A file that cannot be read, or whose UIDs are not DICOM UIDs, gives ``status: "error"`` with a message naming the
file and what failed; an object that holds no dose gives ``status: "not_dose"``. Text is bounded (dose/bounds.py).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from nmdose.dicom_file import read_header
from nmdose.dicom_sr import document_encodings, item_text, sequence_items, walk
from nmdose.dose import codes as C
from nmdose.dose.bounds import bad_uid, has_long_text, truncate_text
from nmdose.dose.ct_radiation_dose import is_ct_dose_report, read_ct_radiation_dose
from nmdose.dose.dose_screen import is_dose_screen, read_dose_screen
from nmdose.dose.header import get_value, get_values
from nmdose.dose.merge import merge_study
from nmdose.dose.nm_image_header import read_nm_image_header
from nmdose.dose.pet_image_header import read_pet_image_header
from nmdose.dose.protocol import read_protocol
from nmdose.dose.radiopharmaceutical_dose import add_observation_times, read_radiopharmaceutical_dose
from nmdose.dose.result import Report, empty_result, iso_date, parse_tm
from nmdose.sop_classes import (
    RADIOPHARMACEUTICAL_RADIATION_DOSE_SR,
    XRAY_RADIATION_DOSE_SR,
    DoseByClass,
    dose_by_class,
)

LATIN1_DECLARATIONS = frozenset({"", "ISO_IR 100", "ISO 2022 IR 100", "ISO_IR 6", "ISO 2022 IR 6"})
K_CT_TITLE = C.XRayRadiationDoseReport.key
K_RRDSR_TITLE = C.RadiopharmaceuticalRadiationDoseReport.key
TEMPLATE_BY_TITLE = {K_CT_TITLE: "10011", K_RRDSR_TITLE: "10021"}

__all__ = ["parse_file", "parse_dataset", "merge_study"]


def parse_file(path: str | os.PathLike, *, opener: Callable[[str], BinaryIO] | None = None) -> dict[str, Any]:
    """Parse one file into the contract; any failure becomes ``status: "error"`` naming the file.

    ``opener(path)``: how to open it (the spool worker opens without following symbolic links); default open()."""
    file = os.fspath(path)
    result = empty_result(file)
    try:
        if opener is None:
            ds = read_header(file)
        else:
            with opener(file) as fh:
                ds = _read_opened(fh, file)
    except InvalidDicomError as exc:
        return _error(result, f"{file}: not a DICOM Part 10 file ({exc})")
    except FileNotFoundError:
        return _error(result, f"{file}: no such file")
    except OSError as exc:
        if exc.errno is None:  # pydicom's own words for a broken file
            return _error(result, f"{file}: cannot be read by pydicom: {type(exc).__name__}: {exc}")
        return _error(result, f"{file}: cannot be opened: {exc.strerror or exc}")
    except Exception as exc:  # truncated files, broken element lengths...
        return _error(result, f"{file}: cannot be read by pydicom: {type(exc).__name__}: {exc}")
    return parse_dataset(ds, file, result)


def _read_opened(fh: BinaryIO, file: str) -> Dataset:
    """``read_header`` of a file already opened (by the spool worker, which never follows a link): read through
    ``/proc/self/fd``, so the very inode that was checked is read, whatever the path names by now."""
    proc = f"/proc/self/fd/{fh.fileno()}"
    if os.path.exists(proc):
        return read_header(proc)
    return dcmread(io.BytesIO(fh.read()), stop_before_pixels=True)  # no /proc: pydicom reads the bytes


def parse_dataset(ds: Dataset, file: str, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parse an already-read dataset (the Orthanc hook path reads from memory)."""
    result = result if result is not None else empty_result(file)
    concept = "header"
    try:
        # one look at the header for the character set and _header's values
        values = get_values(ds, _KEYWORDS)
        charset = _charset_of(values[0])
        report = Report(file, charset_fix=charset in LATIN1_DECLARATIONS)
        concept = "header"
        _header(ds, result, report, values[1:])
        concept = "classification"
        if result["sop_class_uid"] is None and result["modality"] is None:
            return _error(
                result, f"{file}: no SOP Class UID (0008,0016) nor Modality: not a usable DICOM object"
            )
        sop = result["sop_class_uid"] or ""
        modality = result["modality"] or ""
        # The class decides (nmdose.sop_classes.dose_by_class), the modality where the class says less; then
        # the content: an SR is a dose object only with a dose report's title and tree (even a Radiation Dose SR).
        by_class = dose_by_class(sop)
        if by_class in (DoseByClass.DOSE_SR, DoseByClass.TITLED_SR) or modality == "SR":
            concept = "SR content tree"
            _structured_report(ds, sop, result, report)
        elif by_class == DoseByClass.PET or modality == "PT":
            concept = "PET RadiopharmaceuticalInformationSequence"
            result["kind"] = "pet_image"
            result["radiopharmaceutical"] = read_pet_image_header(ds, report)
        elif by_class == DoseByClass.NM or modality == "NM":
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
        if has_long_text(result):  # one scan; the copy and its warnings only when something is cut
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
    return _charset_of(get_value(ds, "SpecificCharacterSet"))


def _charset_of(value: Any) -> str:
    if not value:
        return ""
    if isinstance(value, str):
        return value.strip()
    return str(value[0]).strip() if len(value) == 1 else "multi"


_HEADER_KEYWORDS = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "Manufacturer",
    "ManufacturerModelName", "StationName", "DeviceSerialNumber", "StudyDate", "StudyDescription", "AccessionNumber",
    "PatientAge", "PatientSex", "PatientWeight", "PatientSize", "PatientID", "SoftwareVersions",
)  # fmt: skip


_KEYWORDS = ("SpecificCharacterSet", *_HEADER_KEYWORDS)


def _header(ds: Dataset, result: dict[str, Any], report: Report, values: Any = None) -> None:
    """The header part of the contract; ``values``: ``get_values(ds, _HEADER_KEYWORDS)`` when read already."""
    text = report.text
    (sop_class, sop_instance, study_uid, series_uid, modality, manufacturer, model, station, serial, study_date,
     study_description, accession, age, sex, weight, size, patient_id, software) = (
        get_values(ds, _HEADER_KEYWORDS) if values is None else values
    )  # fmt: skip
    result["sop_class_uid"] = text(sop_class, "SOP Class UID")
    result["sop_instance_uid"] = text(sop_instance, "SOP Instance UID")
    result["study_instance_uid"] = text(study_uid, "Study Instance UID")
    result["series_instance_uid"] = text(series_uid, "Series Instance UID")
    result["modality"] = text(modality, "Modality")
    result["manufacturer"] = text(manufacturer, "Manufacturer")
    result["model_name"] = text(model, "Manufacturer's Model Name")
    result["station_name"] = text(station, "Station Name")
    result["device_serial_number"] = text(serial, "Device Serial Number")
    if software is not None and not isinstance(software, str):  # multi-valued LO
        software = "\\".join(str(v).strip() for v in software if str(v).strip())
    result["software_versions"] = text(software, "Software Versions")
    result["study_date"] = iso_date(study_date)
    tm = parse_tm(get_value(ds, "StudyTime"))  # the report's workload by hour (issue 19); to the second
    result["study_time"] = tm.replace(microsecond=0).isoformat() if tm else None
    result["study_description"] = text(study_description, "Study Description (0008,1030)")
    result["accession_number"] = text(accession, "Accession Number")
    result["protocol"] = read_protocol(ds, report)
    # only for the ingest's keyed pseudonym: it never stores this value (docs/dose.md "Patient pseudonym")
    result["patient_id"] = (str(patient_id).replace("\x00", "").strip() or None) if patient_id else None
    patient = result["patient"]
    patient["age_years"] = _age_years(age, report)
    sex = str(sex or "").strip().upper()
    patient["sex"] = sex if sex in ("M", "F", "O") else None
    weight = report.number(weight, "Patient's Weight (0010,1030)")
    patient["weight_kg"] = (
        None if not weight else report.plausible(weight, "kg", "Patient's Weight (0010,1030)")
    )
    size = report.number(size, "Patient's Size (0010,1020)")
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
    observer = root.find(C.DeviceObserverUID.key)  # TID 1004 under the root (docs/dose.md "Scanners")
    if observer is not None and isinstance(observer.value, str) and observer.value.strip():
        result["device_observer_uid"] = observer.value.strip()[:64]
    if sop == RADIOPHARMACEUTICAL_RADIATION_DOSE_SR or title == K_RRDSR_TITLE:
        if title != K_RRDSR_TITLE:
            report.warn(
                "Document title", f"{title or 'none'} instead of (113500, DCM) in a radiopharmaceutical SR"
            )
        result["kind"] = "radiopharmaceutical_rdsr"
        _check_template(ds, title, report)
        administrations, patient = read_radiopharmaceutical_dose(root, report)
        if any(
            (a["pre_measured_activity_mbq"] is not None and a["pre_measured_datetime"] is None)
            or (a["post_measured_activity_mbq"] is not None and a["post_measured_datetime"] is None)
            for a in administrations
        ):
            add_observation_times(ds, administrations, report)
        result["radiopharmaceutical"] = administrations
        for key, value in patient.items():
            if result["patient"][key] is None:
                result["patient"][key] = value
        return
    if title == K_CT_TITLE:
        if not is_ct_dose_report(root):
            result["status"] = "not_dose"
            report.warn(NOT_DOSE, _why_not_ct(root))
            return
        result["kind"] = "ct_rdsr" if sop == XRAY_RADIATION_DOSE_SR else "ct_esr"
        _check_template(ds, title, report)
        result["ct"] = read_ct_radiation_dose(root, report)
        return
    result["status"] = "not_dose"
    if sop == XRAY_RADIATION_DOSE_SR:
        if title:
            report.warn(
                NOT_DOSE,
                f"X-Ray Radiation Dose SR whose document title is {title} ({root.concept_meaning or 'no meaning'}),"
                " not (113701, DCM) X-Ray Radiation Dose Report: not read",
            )
        else:
            report.warn(
                NOT_DOSE, "X-Ray Radiation Dose SR without a dose template root: " + _why_no_title(ds)
            )
    elif not title:
        report.warn(NOT_DOSE, "SR without a document title: " + _why_no_title(ds))
    else:
        report.warn(
            NOT_DOSE, f"SR titled {title} ({root.concept_meaning or 'no meaning'}), not a dose report"
        )


# The warning that says why a file holds no dose (ingest quotes it when such a copy is refused).
NOT_DOSE = "Not a dose object"
# TID 10001 (Projection X-Ray Radiation Dose): what tells a genuine projection report from an unreadable one
K_PROJECTION_PROCEDURE = "DCM:113704"
K_PROJECTION_CONTENT = frozenset(
    {"DCM:113702", "DCM:113706"}
)  # Accumulated X-Ray Dose, Irradiation Event X-Ray
K_PROCEDURE_REPORTED = C.ProcedureReported.key


def _why_not_ct(root) -> str:
    """Why a (113701, DCM) report is not read as CT: a projection X-ray report, or a content tree with nothing
    of TID 10011 in it (what is found at its root, so the sender's fault can be told)."""
    children = root.children or []
    if not children:
        return (
            "X-Ray Radiation Dose Report without any content item (ContentSequence (0040,A730) missing or empty):"
            " no CT dose content, not read"
        )
    for child in children:
        procedure = getattr(child.value, "key", None) if child.concept == K_PROCEDURE_REPORTED else None
        if procedure == K_PROJECTION_PROCEDURE or child.concept in K_PROJECTION_CONTENT:
            return "projection X-ray report (TID 10001, not CT): not read"
    for i, child in enumerate(children, 1):
        if not child.concept or not child.value_type:
            return (
                f"X-Ray Radiation Dose Report with no dose template under its root: content tree unreadable at "
                f"root item {i} of {len(children)} (concept name {child.concept or 'missing'}, value type "
                f"{child.value_type or 'missing'}): not read"
            )
    found = ", ".join(sorted({c.concept for c in children})[:6])
    return (
        f"X-Ray Radiation Dose Report with no dose template under its root: none of its {len(children)} root "
        f"items is CT Acquisition, CT Accumulated Dose Data or Procedure reported = CT (found {found}): not read"
    )


def _why_no_title(ds: Dataset) -> str:
    """Why an SR has no document title: the root's Concept Name Code Sequence, missing or unreadable."""
    try:
        seq = sequence_items(ds, 0x0040A043)
    except Exception as exc:
        return f"content tree unreadable at the root's ConceptNameCodeSequence (0040,A043): {exc}; not read"
    if not seq:
        return "no ConceptNameCodeSequence (0040,A043) at the root (missing or cut off): not read"
    return "the root's ConceptNameCodeSequence (0040,A043) holds no code: not read"


_CONTENT_TEMPLATE_SEQUENCE = 0x0040A504
_TEMPLATE_IDENTIFIER = 0x0040DB00


# ContentTemplateSequence by its raw bytes and character set: the same few in every report of a scanner model.
_TEMPLATES: dict[tuple[bytes, tuple[str, ...]], tuple[bool, str]] = {}


def _template(ds: Dataset) -> tuple[bool, str]:
    """(ContentTemplateSequence has an item, the first item's TemplateIdentifier), read from the raw bytes like the
    content tree (pydicom's sequence conversion is slow)."""
    key = None
    try:
        elem = ds.get_item(_CONTENT_TEMPLATE_SEQUENCE)
        if (
            type(elem) is RawDataElement
            and elem.VR == "SQ"
            and type(elem.value) is bytes
            and len(elem.value) <= 256
            and elem.is_little_endian
            and not elem.is_implicit_VR
        ):
            encodings = document_encodings(ds)
            if encodings is not None:
                key = (elem.value, tuple(encodings))
                hit = _TEMPLATES.get(key)
                if hit is not None:
                    return hit
        seq = sequence_items(ds, _CONTENT_TEMPLATE_SEQUENCE)
        found = str(item_text(seq[0], _TEMPLATE_IDENTIFIER) or "").strip() if seq else ""
    except Exception:
        return False, ""
    answer = (bool(seq), found)
    if key is not None and len(_TEMPLATES) < 64:
        _TEMPLATES[key] = answer
    return answer


def _check_template(ds: Dataset, title: str, report: Report) -> None:
    seq, found = _template(ds)
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
