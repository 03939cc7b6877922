"""Synthetic dose objects (pydicom): CT Radiation Dose SR (TID 10011) and Radiopharmaceutical Radiation Dose SR
(TID 10021), plus the dose-bearing image headers the dose parser reads (PET/NM RadiopharmaceuticalInformation,
Philips "Dose Info" secondary capture).

Defaults give standard-conformant objects (``dsrdump`` reads them without a content-tree warning). Keyword
``quirks`` reproduce what real scanners send (legacy SRT codes, non-UCUM units, missing template id, empty
target region, two-valued decimal strings, mis-declared character sets…) so the readers can be tested on them.
Codes come from :mod:`nmdose.dose.codes`, the one table shared with the readers.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence as _Seq
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from nmdose import dicom_sr as sr
from nmdose.dicom_sr import Code
from nmdose.dose import codes as C
from nmdose.dose.units import FACTORS
from nmdose.sop_classes import (
    COMPREHENSIVE_SR,
    ENHANCED_SR,
    NM_IMAGE,
    PET_IMAGE,
    RADIOPHARMACEUTICAL_RADIATION_DOSE_SR,
    SECONDARY_CAPTURE,
    XRAY_RADIATION_DOSE_SR,
)

SR_CLASSES = {
    "xray_rdsr": XRAY_RADIATION_DOSE_SR,
    "enhanced_sr": ENHANCED_SR,
    "comprehensive_sr": COMPREHENSIVE_SR,
}

CT_QUIRKS = frozenset(
    {
        "legacy_srt_codes",  # SNOMED-RT (SRT) codes instead of SCT (target region, acquisition type, procedure)
        "dlp_unit",  # unit code value for DLP items, e.g. "mGycm", "cGy.cm", "Gy.cm"; values are scaled to it
        "ctdivol_unit",  # unit code value for CTDIvol items, e.g. "cGy"
        "unit_scheme",  # coding scheme of the units instead of "UCUM", e.g. "99PHI"
        "omit_units",  # NUM items without MeasurementUnitsCodeSequence
        "omit_template",  # root without ContentTemplateSequence
        "empty_target_region",  # Target Region CODE with an empty ConceptCodeSequence
        "procedure_reported_without_child",  # Procedure reported without its Has Intent modifier
        "two_valued_ds",  # CTDIvol NumericValue holding two values "x\\x"
        "private_slash_value",  # a private sequence holding a DS with "/"
        "utf8_as_latin1",  # ISO_IR 100 declared, UTF-8 bytes stored
        "zero_length_sequences",  # empty ContentSequence / MeasuredValueSequence items
        "omit_accumulated",  # no CT Accumulated Dose Data container
        "title",  # document title Code (default 113701 X-Ray Radiation Dose Report)
    }
)
RRDSR_QUIRKS = frozenset(
    {"legacy_srt_codes", "activity_unit", "omit_template", "omit_patient_characteristics", "utf8_as_latin1"}
)


@dataclass
class XraySource:
    """One X-ray source of a CT acquisition (TID 10013 CT X-Ray Source Parameters)."""

    identification: str = "A"
    kvp: float | None = 120.0
    tube_current_ma: float | None = 200.0
    max_tube_current_ma: float | None = 300.0
    exposure_time_per_rotation_s: float | None = 0.5


@dataclass
class DoseCheck:
    """TID 10015 CT Dose Check Details; None values are left out."""

    dlp_alert_value_configured: bool | None = None
    ctdivol_alert_value_configured: bool | None = None
    dlp_alert_value: float | None = None
    ctdivol_alert_value: float | None = None
    accumulated_dlp_forward_estimate: float | None = None
    accumulated_ctdivol_forward_estimate: float | None = None
    alert_reason_for_proceeding: str | None = None
    alert_person_name: str | None = None
    dlp_notification_value_configured: bool | None = None
    ctdivol_notification_value_configured: bool | None = None
    dlp_notification_value: float | None = None
    ctdivol_notification_value: float | None = None
    dlp_forward_estimate: float | None = None
    ctdivol_forward_estimate: float | None = None
    notification_reason_for_proceeding: str | None = None


@dataclass
class CtAcquisition:
    """One CT irradiation event (TID 10013). ``ctdivol_mgy`` None for localizers (no CT Dose)."""

    acquisition_protocol: str | None = "Chest routine"
    target_region: str | None = "chest"
    acquisition_type: str = "spiral"
    ctdivol_mgy: float | None = 8.0
    dlp_mgycm: float | None = 300.0
    phantom: str | None = "body32"
    scanning_length_mm: float | None = 350.0
    exposure_time_s: float | None = 5.0
    pitch: float | None = 1.0
    nominal_single_collimation_mm: float | None = 0.625
    nominal_total_collimation_mm: float | None = 40.0
    sources: list[XraySource] = field(default_factory=lambda: [XraySource()])
    irradiation_event_uid: str = field(default_factory=generate_uid)
    dose_check: DoseCheck | None = None
    # TID 10013 CT Dose size items, written in cm as scanners do (None: left out, the default)
    ssde_mgy: float | None = None
    ssde_method: str | None = None  # key of codes.SSDE_METHODS
    water_equivalent_diameter_mm: float | None = None
    wed_method: str | None = None  # key of codes.WED_METHODS
    effective_diameter_mm: float | None = None
    lateral_dimension_mm: float | None = None
    ap_dimension_mm: float | None = None


@dataclass
class DoseStudyInfo:
    """Patient, study and equipment attributes shared by every object of a synthetic study."""

    patient_id: str = "SIM0001"
    patient_name: str = "SIM^PATIENT"
    patient_birth_date: str = "19700101"
    patient_sex: str = "M"
    patient_age: str | None = "055Y"
    patient_weight_kg: float | None = 70.0
    patient_height_m: float | None = 1.70
    study_instance_uid: str = field(default_factory=generate_uid)
    study_date: str = "20240315"
    study_time: str = "101500"
    study_description: str = "PET-CT Whole Body"
    accession_number: str = "ACC0001"
    manufacturer: str = "SIMULATED"
    model_name: str = "SimScan 64"
    station_name: str = "SIMCT01"
    device_serial_number: str = "SN0001"
    device_observer_uid: str | None = None  # TID 1004; None: derived from manufacturer and serial number
    software_versions: str = "nmdose-sim 1"
    specific_character_set: str | None = "ISO_IR 100"
    protocol_name: str | None = None
    body_part_examined: str | None = None
    requested_procedure: str | None = None
    performed_procedure: str | None = None


@dataclass
class RadiopharmaceuticalAdministration:
    """One administration (TID 10022). Datetimes naive local time; half-life defaults from the nuclide table."""

    agent: str = "fdg"
    radionuclide: str = "F18"
    activity_mbq: float | None = 370.0
    start_datetime: _dt.datetime | None = _dt.datetime(2024, 3, 15, 9, 0, 0)
    stop_datetime: _dt.datetime | None = None
    route: str | None = "intravenous"
    half_life_s: float | None = None
    pre_measured_activity_mbq: float | None = None
    post_measured_activity_mbq: float | None = None
    volume_ml: float | None = None
    # when the pre/post activities were measured: the NUM items' Observation DateTime (0040,A032); None: left out
    pre_measured_datetime: _dt.datetime | None = None
    post_measured_datetime: _dt.datetime | None = None
    event_uid: str = field(default_factory=generate_uid)


# ------------------------------------------------------------------------------------------------- helpers


def _dt_string(value: _dt.datetime) -> str:
    return value.strftime("%Y%m%d%H%M%S")


def _mojibake(text: str) -> str:
    """What a reader trusting ISO_IR 100 sees for UTF-8 bytes (stored back as the same UTF-8 bytes)."""
    return text.encode("utf-8").decode("latin-1")


def _base(
    study: DoseStudyInfo, *, modality: str, sop_class: str, series_uid: str, sop_uid: str, quirks
) -> Dataset:
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    fix = _mojibake if quirks.get("utf8_as_latin1") else (lambda s: s)
    if quirks.get("utf8_as_latin1"):
        ds.SpecificCharacterSet = "ISO_IR 100"
    elif study.specific_character_set:
        ds.SpecificCharacterSet = study.specific_character_set
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.ContentDate = study.study_date
    ds.ContentTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.Modality = modality
    ds.Manufacturer = study.manufacturer
    ds.ReferringPhysicianName = ""
    ds.StationName = study.station_name
    ds.StudyDescription = fix(study.study_description)
    ds.ManufacturerModelName = study.model_name
    ds.PatientName = fix(study.patient_name)
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    if study.patient_age is not None:
        ds.PatientAge = study.patient_age
    if study.patient_height_m is not None:
        ds.PatientSize = sr.format_ds(study.patient_height_m)
    if study.patient_weight_kg is not None:
        ds.PatientWeight = sr.format_ds(study.patient_weight_kg)
    ds.DeviceSerialNumber = study.device_serial_number
    ds.SoftwareVersions = study.software_versions
    if study.protocol_name is not None:
        ds.ProtocolName = fix(study.protocol_name)
    if study.body_part_examined is not None:
        ds.BodyPartExamined = study.body_part_examined
    ds.StudyInstanceUID = study.study_instance_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = "999" if modality == "SR" else "1"
    ds.InstanceNumber = "1"
    if study.performed_procedure is not None:
        ds.PerformedProcedureStepDescription = fix(study.performed_procedure)
    if study.requested_procedure is not None:
        ds.RequestedProcedureDescription = fix(study.requested_procedure)
    return ds


def _sr_document(ds: Dataset, root: Dataset) -> Dataset:
    """SR Document General module + the root content item copied into the dataset."""
    ds.ReferencedPerformedProcedureStepSequence = Sequence([])
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.PerformedProcedureCodeSequence = Sequence([])
    for elem in root:
        ds[elem.tag] = elem
    return ds


def save(ds: Dataset, path: str | Path) -> Path:
    """Write a built object as a DICOM Part 10 file."""
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def _code(key: str, table: dict, legacy: bool) -> Code:
    value = table[key]
    code = value if isinstance(value, Code) else value[0]
    return C.legacy_srt(code) if legacy else code


def _unit(name: str, quirks: dict) -> Code | None:
    if quirks.get("omit_units"):
        return None
    code = C.UCUM[name]
    scheme = quirks.get("unit_scheme")
    return Code(code.value, scheme, code.meaning) if scheme else code


def _custom_unit(spelling: str, quirks: dict) -> Code | None:
    if quirks.get("omit_units"):
        return None
    return Code(spelling, quirks.get("unit_scheme") or "UCUM", spelling)


def _scaled(value: float, quantity: str, spelling: str) -> float:
    from nmdose.dose.units import normalise_unit

    table = FACTORS[quantity]
    factor = table.get(spelling) or table.get(normalise_unit(spelling)) or 1.0  # unknown spelling: as given
    return value / factor


# ---------------------------------------------------------------------------------------- TID 10011 family


def _observer_context(study: DoseStudyInfo, device_uid: str) -> list[Dataset]:
    """TID 1002 Observer Context with TID 1004 Device Observer Identifying Attributes."""
    return [
        sr.code("HAS OBS CONTEXT", C.ObserverType, C.Device),
        sr.uidref("HAS OBS CONTEXT", C.DeviceObserverUID, device_uid),
        sr.text("HAS OBS CONTEXT", C.DeviceObserverName, study.station_name),
        sr.text("HAS OBS CONTEXT", C.DeviceObserverManufacturer, study.manufacturer),
        sr.text("HAS OBS CONTEXT", C.DeviceObserverModelName, study.model_name),
        sr.text("HAS OBS CONTEXT", C.DeviceObserverSerialNumber, study.device_serial_number),
    ]


def _dose_check(check: DoseCheck, quirks: dict) -> list[Dataset]:
    """TID 10015 CT Dose Check Details."""

    def yes_no(concept: Code, value: bool | None) -> Dataset | None:
        return None if value is None else sr.code("CONTAINS", concept, C.Yes if value else C.No)

    def dlp(concept: Code, value: float | None) -> Dataset | None:
        return None if value is None else sr.num("CONTAINS", concept, value, _unit("mGy.cm", quirks))

    def ctdi(concept: Code, value: float | None) -> Dataset | None:
        return None if value is None else sr.num("CONTAINS", concept, value, _unit("mGy", quirks))

    alert = [
        yes_no(C.DLPAlertValueConfigured, check.dlp_alert_value_configured),
        yes_no(C.CTDIvolAlertValueConfigured, check.ctdivol_alert_value_configured),
        dlp(C.DLPAlertValue, check.dlp_alert_value),
        ctdi(C.CTDIvolAlertValue, check.ctdivol_alert_value),
        dlp(C.AccumulatedDLPForwardEstimate, check.accumulated_dlp_forward_estimate),
        ctdi(C.AccumulatedCTDIvolForwardEstimate, check.accumulated_ctdivol_forward_estimate),
        None
        if check.alert_reason_for_proceeding is None
        else sr.text("CONTAINS", C.ReasonForProceeding, check.alert_reason_for_proceeding),
        None
        if check.alert_person_name is None
        else sr.pname("CONTAINS", C.PersonName, check.alert_person_name),
    ]
    notification = [
        yes_no(C.DLPNotificationValueConfigured, check.dlp_notification_value_configured),
        yes_no(C.CTDIvolNotificationValueConfigured, check.ctdivol_notification_value_configured),
        dlp(C.DLPNotificationValue, check.dlp_notification_value),
        ctdi(C.CTDIvolNotificationValue, check.ctdivol_notification_value),
        dlp(C.DLPForwardEstimate, check.dlp_forward_estimate),
        ctdi(C.CTDIvolForwardEstimate, check.ctdivol_forward_estimate),
        None
        if check.notification_reason_for_proceeding is None
        else sr.text("CONTAINS", C.ReasonForProceeding, check.notification_reason_for_proceeding),
    ]
    out = []
    if any(x is not None for x in alert):
        out.append(sr.container(C.DoseCheckAlertDetails, alert))
    if any(x is not None for x in notification):
        out.append(sr.container(C.DoseCheckNotificationDetails, notification))
    return out


def _size_items(event: CtAcquisition) -> list[Dataset]:
    """TID 10013 CT Dose: Size Specific Dose Estimation (mGy) with its Measurement Method (CID 10023), the
    patient's dimensions and the water-equivalent diameter with its method (CID 10024), sizes in cm."""
    items: list[Dataset] = []
    if event.ssde_mgy is not None:
        ssde = sr.num("CONTAINS", C.SizeSpecificDoseEstimate, event.ssde_mgy, C.UCUM["mGy"])
        if event.ssde_method is not None:
            method = C.SSDE_METHODS[event.ssde_method][0]
            ssde.ContentSequence = [sr.code("HAS CONCEPT MOD", C.MeasurementMethod, method)]
        items.append(ssde)
    for concept, mm in (
        (C.MeasuredLateralDimension, event.lateral_dimension_mm),
        (C.MeasuredAPDimension, event.ap_dimension_mm),
        (C.DerivedEffectiveDiameter, event.effective_diameter_mm),
        (C.WaterEquivalentDiameter, event.water_equivalent_diameter_mm),
    ):
        if mm is None:
            continue
        item = sr.num("CONTAINS", concept, mm / 10.0, C.UCUM["cm"])
        if concept is C.WaterEquivalentDiameter and event.wed_method is not None:
            method = C.WED_METHODS[event.wed_method]
            item.ContentSequence = [sr.code("HAS CONCEPT MOD", C.MeasurementMethod, method)]
        items.append(item)
    return items


def _ct_event(event: CtAcquisition, quirks: dict) -> Dataset:
    """TID 10013 CT Irradiation Event Data (with TID 10014 scanning length and TID 10015 dose check)."""
    legacy = bool(quirks.get("legacy_srt_codes"))
    dlp_unit = quirks.get("dlp_unit")
    ctdi_unit = quirks.get("ctdivol_unit")
    items: list[Dataset | None] = []
    if event.acquisition_protocol is not None:
        items.append(sr.text("CONTAINS", C.AcquisitionProtocol, event.acquisition_protocol))
    if quirks.get("empty_target_region"):
        items.append(sr.code("CONTAINS", C.TargetRegion, None))
    elif event.target_region is not None:
        items.append(
            sr.code("CONTAINS", C.TargetRegion, _code(event.target_region, C.TARGET_REGIONS, legacy))
        )
    items.append(
        sr.code(
            "CONTAINS", C.CTAcquisitionType, _code(event.acquisition_type, C.CT_ACQUISITION_TYPES, legacy)
        )
    )
    items.append(sr.uidref("CONTAINS", C.IrradiationEventUID, event.irradiation_event_uid))

    params: list[Dataset | None] = []
    if event.exposure_time_s is not None:
        params.append(sr.num("CONTAINS", C.ExposureTime, event.exposure_time_s, _unit("s", quirks)))
    if event.scanning_length_mm is not None:
        params.append(sr.num("CONTAINS", C.ScanningLength, event.scanning_length_mm, _unit("mm", quirks)))
    if event.nominal_single_collimation_mm is not None:
        params.append(
            sr.num(
                "CONTAINS",
                C.NominalSingleCollimationWidth,
                event.nominal_single_collimation_mm,
                _unit("mm", quirks),
            )
        )
    if event.nominal_total_collimation_mm is not None:
        params.append(
            sr.num(
                "CONTAINS",
                C.NominalTotalCollimationWidth,
                event.nominal_total_collimation_mm,
                _unit("mm", quirks),
            )
        )
    if event.pitch is not None and event.acquisition_type == "spiral":
        params.append(sr.num("CONTAINS", C.PitchFactor, event.pitch, _unit("ratio", quirks)))
    if quirks.get("zero_length_sequences"):
        params.append(sr.num("CONTAINS", C.ExposedRange, None, None))
    params.append(sr.num("CONTAINS", C.NumberOfXRaySources, len(event.sources), _unit("sources", quirks)))
    for source in event.sources:
        src: list[Dataset | None] = [
            sr.text("CONTAINS", C.IdentificationOfTheXRaySource, source.identification),
            None if source.kvp is None else sr.num("CONTAINS", C.KVP, source.kvp, _unit("kV", quirks)),
            None
            if source.max_tube_current_ma is None
            else sr.num(
                "CONTAINS", C.MaximumXRayTubeCurrent, source.max_tube_current_ma, _unit("mA", quirks)
            ),
            None
            if source.tube_current_ma is None
            else sr.num("CONTAINS", C.XRayTubeCurrent, source.tube_current_ma, _unit("mA", quirks)),
            None
            if source.exposure_time_per_rotation_s is None
            else sr.num(
                "CONTAINS", C.ExposureTimePerRotation, source.exposure_time_per_rotation_s, _unit("s", quirks)
            ),
        ]
        params.append(sr.container(C.CTXRaySourceParameters, src))
    items.append(sr.container(C.CTAcquisitionParameters, params))

    if event.ctdivol_mgy is not None or event.dlp_mgycm is not None:
        dose: list[Dataset | None] = []
        if event.ctdivol_mgy is not None:
            if ctdi_unit:
                value = _scaled(event.ctdivol_mgy, "mGy", ctdi_unit)
                dose.append(sr.num("CONTAINS", C.MeanCTDIvol, value, _custom_unit(ctdi_unit, quirks)))
            else:
                dose.append(sr.num("CONTAINS", C.MeanCTDIvol, event.ctdivol_mgy, _unit("mGy", quirks)))
            if quirks.get("two_valued_ds"):
                text_ = sr.format_ds(event.ctdivol_mgy)
                dose[-1].MeasuredValueSequence[0].NumericValue = [text_, text_]
        if event.phantom is not None:
            dose.append(sr.code("CONTAINS", C.CTDIwPhantomType, C.PHANTOMS[event.phantom]))
        if event.dlp_mgycm is not None:
            if dlp_unit:
                value = _scaled(event.dlp_mgycm, "mGy.cm", dlp_unit)
                dose.append(sr.num("CONTAINS", C.DLP, value, _custom_unit(dlp_unit, quirks)))
            else:
                dose.append(sr.num("CONTAINS", C.DLP, event.dlp_mgycm, _unit("mGy.cm", quirks)))
        dose.extend(_size_items(event))
        if event.dose_check is not None:
            dose.extend(_dose_check(event.dose_check, quirks))
        items.append(sr.container(C.CTDose, dose))
    if quirks.get("zero_length_sequences"):
        comment = sr.text("CONTAINS", C.Comment, "zero-length ContentSequence")
        comment.ContentSequence = Sequence([])
        items.append(comment)
    return sr.container(C.CTAcquisition, items)


def ct_radiation_dose_sr(
    study: DoseStudyInfo,
    events: _Seq[CtAcquisition],
    *,
    series_uid: str,
    sop_uid: str,
    sop_class: str = "xray_rdsr",
    total_dlp_mgycm: float | None = None,
    start: _dt.datetime | None = None,
    **quirks,
) -> Dataset:
    """X-Ray Radiation Dose SR (or Enhanced/Comprehensive SR titled 113701) holding TID 10011 for CT.

    ``total_dlp_mgycm`` defaults to the sum of the events' DLP (TID 10012); ``quirks`` are listed in
    :data:`CT_QUIRKS`.
    """
    unknown = set(quirks) - CT_QUIRKS
    if unknown:
        raise TypeError(f"unknown quirk(s) {sorted(unknown)}; known: {sorted(CT_QUIRKS)}")
    from nmdose.simulate import dose_check  # the simulated scanners' TID 10015 alerts (a few studies)

    events = dose_check.with_dose_check(study, events, DoseCheck)
    legacy = bool(quirks.get("legacy_srt_codes"))
    ds = _base(
        study,
        modality="SR",
        sop_class=SR_CLASSES[sop_class],
        series_uid=series_uid,
        sop_uid=sop_uid,
        quirks=quirks,
    )
    ds.SeriesDescription = "Dose Report"
    procedure: list[Dataset] = []
    if not quirks.get("procedure_reported_without_child"):
        procedure = [
            sr.code(
                "HAS CONCEPT MOD",
                C.HasIntent,
                C.legacy_srt(C.DiagnosticIntent) if legacy else C.DiagnosticIntent,
            )
        ]
    proc_item = sr.code(
        "HAS CONCEPT MOD",
        C.ProcedureReported,
        C.legacy_srt(C.ComputedTomographyXRay) if legacy else C.ComputedTomographyXRay,
    )
    if procedure:
        proc_item.ContentSequence = procedure
    start = start or _dt.datetime.strptime(study.study_date + study.study_time[:6], "%Y%m%d%H%M%S")
    total = total_dlp_mgycm
    if total is None:
        total = sum(e.dlp_mgycm or 0.0 for e in events)
    dlp_unit = quirks.get("dlp_unit")
    if dlp_unit:
        total_item = sr.num(
            "CONTAINS",
            C.CTDoseLengthProductTotal,
            _scaled(total, "mGy.cm", dlp_unit),
            _custom_unit(dlp_unit, quirks),
        )
    else:
        total_item = sr.num("CONTAINS", C.CTDoseLengthProductTotal, total, _unit("mGy.cm", quirks))
    children: list[Dataset | None] = [
        proc_item,
        *_observer_context(
            study,
            study.device_observer_uid
            or generate_uid(entropy_srcs=[study.manufacturer, study.device_serial_number]),
        ),
        sr.datetime_item("HAS OBS CONTEXT", C.StartOfXRayIrradiation, _dt_string(start)),
        sr.datetime_item(
            "HAS OBS CONTEXT", C.EndOfXRayIrradiation, _dt_string(start + _dt.timedelta(minutes=10))
        ),
        _scope(study),
    ]
    if not quirks.get("omit_accumulated"):
        children.append(
            sr.container(
                C.CTAccumulatedDoseData,
                [
                    sr.num(
                        "CONTAINS", C.TotalNumberOfIrradiationEvents, len(events), _unit("events", quirks)
                    ),
                    total_item,
                ],
            )
        )
    children.extend(_ct_event(e, quirks) for e in events)
    children.append(sr.code("CONTAINS", C.SourceOfDoseInformation, C.AutomatedDataCollection))
    title = quirks.get("title") or C.XRayRadiationDoseReport
    root = sr.container(
        title, children, relationship=None, template=None if quirks.get("omit_template") else "10011"
    )
    ds = _sr_document(ds, root)
    if quirks.get("private_slash_value"):
        _add_private_slash(ds)
    return ds


def _scope(study: DoseStudyInfo) -> Dataset:
    item = sr.code("HAS OBS CONTEXT", C.ScopeOfAccumulation, C.Study)
    item.ContentSequence = [sr.uidref("HAS PROPERTIES", C.StudyInstanceUID, study.study_instance_uid)]
    return item


def _add_private_slash(ds: Dataset) -> None:
    """A vendor's private sequence holding a decimal string with '/' (not a valid DS)."""
    block = ds.private_block(0x0019, "NMDOSE SIM PRIVATE", create=True)
    inner = Dataset()
    inner_block = inner.private_block(0x0019, "NMDOSE SIM PRIVATE", create=True)
    inner_block.add_new(0x20, "LO", "CTDI ratio")
    tag = inner_block.get_tag(0x21)  # pydicom refuses to build this value, so it goes in as raw bytes
    inner._dict[tag] = RawDataElement(Tag(tag), "DS", 6, b"12/34 ", 0, False, True)
    block.add_new(0x10, "SQ", Sequence([inner]))


# ----------------------------------------------------------------------------------------------- TID 10021


def radiopharmaceutical_dose_sr(
    study: DoseStudyInfo,
    administration: RadiopharmaceuticalAdministration,
    *,
    series_uid: str,
    sop_uid: str,
    **quirks,
) -> Dataset:
    """Radiopharmaceutical Radiation Dose SR (TID 10021 with TID 10022 administration, TID 10023 patient)."""
    unknown = set(quirks) - RRDSR_QUIRKS
    if unknown:
        raise TypeError(f"unknown quirk(s) {sorted(unknown)}; known: {sorted(RRDSR_QUIRKS)}")
    legacy = bool(quirks.get("legacy_srt_codes"))
    ds = _base(
        study,
        modality="SR",
        sop_class=RADIOPHARMACEUTICAL_RADIATION_DOSE_SR,
        series_uid=series_uid,
        sop_uid=sop_uid,
        quirks=quirks,
    )
    ds.SeriesDescription = "Radiopharmaceutical Dose Report"
    a = administration
    agent_code = _code(a.agent, C.RADIOPHARMACEUTICALS, legacy)
    nuclide_code, default_half_life = C.RADIONUCLIDES[a.radionuclide]
    if legacy:
        nuclide_code = C.legacy_srt(nuclide_code)
    half_life = a.half_life_s if a.half_life_s is not None else default_half_life
    activity_unit = quirks.get("activity_unit")

    def activity(concept: Code, mbq: float) -> Dataset:
        if activity_unit:
            return sr.num(
                "CONTAINS",
                concept,
                _scaled(mbq, "MBq", activity_unit),
                Code(activity_unit, "UCUM", activity_unit),
            )
        return sr.num("CONTAINS", concept, mbq, C.UCUM["MBq"])

    event: list[Dataset | None] = [
        sr.code(
            "CONTAINS",
            C.legacy_srt(C.RadiopharmaceuticalAgent) if legacy else C.RadiopharmaceuticalAgent,
            agent_code,
        ),
        sr.code("CONTAINS", C.legacy_srt(C.Radionuclide) if legacy else C.Radionuclide, nuclide_code),
        sr.num(
            "CONTAINS",
            C.legacy_srt(C.RadionuclideHalfLife) if legacy else C.RadionuclideHalfLife,
            half_life,
            C.UCUM["s"],
        ),
        sr.uidref("CONTAINS", C.RadiopharmaceuticalAdministrationEventUID, a.event_uid),
    ]
    if a.activity_mbq is not None:
        event.append(activity(C.AdministeredActivity, a.activity_mbq))
    for concept, mbq, measured_at in (
        (C.PreAdministrationMeasuredActivity, a.pre_measured_activity_mbq, a.pre_measured_datetime),
        (C.PostAdministrationMeasuredActivity, a.post_measured_activity_mbq, a.post_measured_datetime),
    ):
        if mbq is not None:
            event.append(activity(concept, mbq))
            if measured_at is not None:
                event[-1].ObservationDateTime = _dt_string(measured_at)
    if a.start_datetime is not None:
        event.append(
            sr.datetime_item("CONTAINS", C.RadiopharmaceuticalStartDateTime, _dt_string(a.start_datetime))
        )
    if a.stop_datetime is not None:
        event.append(
            sr.datetime_item("CONTAINS", C.RadiopharmaceuticalStopDateTime, _dt_string(a.stop_datetime))
        )
    if a.volume_ml is not None:
        event.append(sr.num("CONTAINS", C.RadiopharmaceuticalVolume, a.volume_ml, C.UCUM["cm3"]))
    if a.route is not None:
        route = C.ROUTES[a.route]
        event.append(
            sr.code(
                "CONTAINS",
                C.legacy_srt(C.RouteOfAdministration) if legacy else C.RouteOfAdministration,
                C.legacy_srt(route) if legacy else route,
            )
        )
    children: list[Dataset | None] = [
        sr.code("HAS CONCEPT MOD", C.ProcedureReported, C.RadiopharmaceuticalAdministration),
        sr.container(C.RadiopharmaceuticalAdministration, event),
    ]
    if not quirks.get("omit_patient_characteristics"):
        patient: list[Dataset | None] = []
        if study.patient_age:
            try:
                years = float(study.patient_age[:3]) if study.patient_age.endswith("Y") else None
            except ValueError:
                years = None
            if years is not None:
                patient.append(sr.num("CONTAINS", C.SubjectAge, years, C.UCUM["a"]))
        if study.patient_sex in ("M", "F"):
            patient.append(
                sr.code("CONTAINS", C.SubjectSex, C.Male if study.patient_sex == "M" else C.Female)
            )
        if study.patient_height_m is not None:
            patient.append(sr.num("CONTAINS", C.PatientHeight, study.patient_height_m, C.UCUM["m"]))
        if study.patient_weight_kg is not None:
            patient.append(sr.num("CONTAINS", C.PatientWeight, study.patient_weight_kg, C.UCUM["kg"]))
        if patient:
            children.append(sr.container(C.PatientCharacteristics, patient))
    root = sr.container(
        C.RadiopharmaceuticalRadiationDoseReport,
        children,
        relationship=None,
        template=None if quirks.get("omit_template") else "10021",
    )
    return _sr_document(ds, root)


# ------------------------------------------------------------------------------- dose-bearing image headers


def pet_nm_image_header(
    study: DoseStudyInfo,
    administration: RadiopharmaceuticalAdministration,
    *,
    modality: str,
    series_uid: str,
    sop_uid: str,
    total_dose_unit: str | None = None,
    series_description: str = "PET WB",
    start_time_only: bool = False,
    legacy_srt_codes: bool = False,
    series_datetime: _dt.datetime | None = None,
    acquisition_datetime: _dt.datetime | None = None,
) -> Dataset:
    """A PT or NM image header (no pixel data) with RadiopharmaceuticalInformationSequence (PS3.3 C.8.9.1 /
    C.8.4.10). ``total_dose_unit`` "Bq" or "MBq"; default as vendors do it: Bq for PT, MBq for NM.
    SeriesDate/Time are the study's unless ``series_datetime`` is given (a series reconstructed another day);
    AcquisitionDate/Time are written only when ``acquisition_datetime`` is given."""
    sop_class = PET_IMAGE if modality == "PT" else NM_IMAGE
    ds = _base(
        study, modality=modality, sop_class=sop_class, series_uid=series_uid, sop_uid=sop_uid, quirks={}
    )
    ds.SeriesDescription = series_description
    a = administration
    unit = total_dose_unit or ("Bq" if modality == "PT" else "MBq")
    info = Dataset()
    agent_code, _nuclide = C.RADIOPHARMACEUTICALS[a.agent]
    nuclide_code, default_half_life = C.RADIONUCLIDES[a.radionuclide]
    if legacy_srt_codes:
        agent_code, nuclide_code = C.legacy_srt(agent_code), C.legacy_srt(nuclide_code)
    info.Radiopharmaceutical = agent_code.meaning.replace("^", "")
    if a.route is not None:
        info.RadiopharmaceuticalRoute = C.ROUTES[a.route].meaning
    if a.volume_ml is not None:
        info.RadiopharmaceuticalVolume = sr.format_ds(a.volume_ml)
    if a.start_datetime is not None:
        info.RadiopharmaceuticalStartTime = a.start_datetime.strftime("%H%M%S")
        if not start_time_only:
            info.RadiopharmaceuticalStartDateTime = _dt_string(a.start_datetime)
    if a.stop_datetime is not None:
        info.RadiopharmaceuticalStopTime = a.stop_datetime.strftime("%H%M%S")
    if a.activity_mbq is not None:
        value = a.activity_mbq * 1e6 if unit == "Bq" else a.activity_mbq
        info.RadionuclideTotalDose = sr.format_ds(value)
    info.RadionuclideHalfLife = sr.format_ds(
        a.half_life_s if a.half_life_s is not None else default_half_life
    )
    if a.radionuclide in C.POSITRON_EMITTERS:
        info.RadionuclidePositronFraction = {"F18": "0.9673", "Ga68": "0.8894", "C11": "0.9976"}.get(
            a.radionuclide, "1"
        )
    info.RadionuclideCodeSequence = [sr.code_sequence_item(nuclide_code)]
    info.RadiopharmaceuticalCodeSequence = [sr.code_sequence_item(agent_code)]
    ds.RadiopharmaceuticalInformationSequence = [info]
    ds.SeriesDate = study.study_date if series_datetime is None else series_datetime.strftime("%Y%m%d")
    ds.SeriesTime = study.study_time if series_datetime is None else series_datetime.strftime("%H%M%S")
    if acquisition_datetime is not None:
        ds.AcquisitionDate = acquisition_datetime.strftime("%Y%m%d")
        ds.AcquisitionTime = acquisition_datetime.strftime("%H%M%S")
    if modality == "PT":
        ds.Units = "BQML"
        ds.DecayCorrection = "START"
        ds.CorrectedImage = ["DECY", "ATTN"]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\x00" * 8
    return ds


def philips_dose_info(
    study: DoseStudyInfo,
    events: _Seq[CtAcquisition],
    *,
    series_uid: str,
    sop_uid: str,
    total_dlp_mgycm: float | None = None,
) -> Dataset:
    """Philips "Dose Info" secondary capture: ExposureDoseSequence per scan + private total DLP (00E1,1021)."""
    ds = _base(
        study, modality="CT", sop_class=SECONDARY_CAPTURE, series_uid=series_uid, sop_uid=sop_uid, quirks={}
    )
    ds.Manufacturer = "Philips"
    ds.SeriesDescription = "Dose Info"
    ds.ImageType = ["DERIVED", "SECONDARY", "DOSE_INFO"]
    ds.ConversionType = "WSD"
    items = []
    for event in events:
        item = Dataset()
        item.AcquisitionType = {
            "spiral": "SPIRAL",
            "sequenced": "SEQUENCED",
            "constant_angle": "CONSTANT_ANGLE",
            "stationary": "STATIONARY",
        }.get(event.acquisition_type, "")
        if event.sources and event.sources[0].kvp is not None:
            item.KVP = sr.format_ds(event.sources[0].kvp)
        if event.sources and event.sources[0].tube_current_ma is not None:
            item.XRayTubeCurrentInmA = event.sources[0].tube_current_ma
        if event.exposure_time_s is not None:
            item.ExposureTime = int(round(event.exposure_time_s * 1000))  # IS, ms
        if event.ctdivol_mgy is not None:
            item.CTDIvol = event.ctdivol_mgy
        if event.acquisition_protocol:
            item.CommentsOnRadiationDose = event.acquisition_protocol
        items.append(item)
    ds.ExposureDoseSequence = items
    total = total_dlp_mgycm if total_dlp_mgycm is not None else sum(e.dlp_mgycm or 0.0 for e in events)
    block = ds.private_block(0x00E1, "ELSCINT1", create=True)
    block.add_new(0x21, "DS", sr.format_ds(total))
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\x00" * 4
    return ds
