"""CT Radiation Dose reader: TID 10011 with TID 10012 (accumulated), 10013 (each CT acquisition), 10014 (scanning
length) and 10015 (dose check), from an X-Ray Radiation Dose SR or an Enhanced/Comprehensive SR titled
(113701, DCM, "X-Ray Radiation Dose Report").

Concepts are matched by code key only (SRT mapped to SCT). The reader is tolerant of where items sit: containers
it does not know are looked into, so a vendor that nests the dose check or scanning length elsewhere still reads.
"""

from __future__ import annotations

from typing import Any

from nmdose.dicom_sr import Code, Node
from nmdose.dose import codes as C
from nmdose.dose.result import Report, coded, empty_dose_check, empty_event, empty_source

K_ACCUMULATED = C.CTAccumulatedDoseData.key
K_ACQUISITION = C.CTAcquisition.key
K_TOTAL_EVENTS = C.TotalNumberOfIrradiationEvents.key
K_TOTAL_DLP = C.CTDoseLengthProductTotal.key
K_SOURCE = C.CTXRaySourceParameters.key
K_ALERT = C.DoseCheckAlertDetails.key
K_NOTIFICATION = C.DoseCheckNotificationDetails.key
K_PROCEDURE = C.ProcedureReported.key
CT_PROCEDURE = C.ComputedTomographyXRay.key

# NUM items of an event: concept key -> (result field, quantity)
EVENT_NUMBERS: dict[str, tuple[str, str]] = {
    C.MeanCTDIvol.key: ("ctdivol_mgy", "mGy"),
    C.DLP.key: ("dlp_mgycm", "mGy.cm"),
    C.ScanningLength.key: ("scanning_length_mm", "mm"),
    C.ExposureTime.key: ("exposure_time_s", "s"),
    C.PitchFactor.key: ("pitch", "ratio"),
    C.NominalTotalCollimationWidth.key: ("nominal_total_collimation_mm", "mm"),
    C.NominalSingleCollimationWidth.key: ("nominal_single_collimation_mm", "mm"),
}
SOURCE_NUMBERS: dict[str, tuple[str, str]] = {
    C.KVP.key: ("kvp", "kV"),
    C.MaximumXRayTubeCurrent.key: ("max_tube_current_ma", "mA"),
    C.XRayTubeCurrent.key: ("tube_current_ma", "mA"),
    C.ExposureTimePerRotation.key: ("exposure_time_per_rotation_s", "s"),
}
ALERT_ITEMS: dict[str, tuple[str, str | None]] = {  # key -> (field, quantity; None = yes/no code)
    C.DLPAlertValueConfigured.key: ("dlp_alert_value_configured", None),
    C.CTDIvolAlertValueConfigured.key: ("ctdivol_alert_value_configured", None),
    C.DLPAlertValue.key: ("dlp_alert_value", "mGy.cm"),
    C.CTDIvolAlertValue.key: ("ctdivol_alert_value", "mGy"),
    C.AccumulatedDLPForwardEstimate.key: ("accumulated_dlp_forward_estimate", "mGy.cm"),
    C.AccumulatedCTDIvolForwardEstimate.key: ("accumulated_ctdivol_forward_estimate", "mGy"),
}
NOTIFICATION_ITEMS: dict[str, tuple[str, str | None]] = {
    C.DLPNotificationValueConfigured.key: ("dlp_notification_value_configured", None),
    C.CTDIvolNotificationValueConfigured.key: ("ctdivol_notification_value_configured", None),
    C.DLPNotificationValue.key: ("dlp_notification_value", "mGy.cm"),
    C.CTDIvolNotificationValue.key: ("ctdivol_notification_value", "mGy"),
    C.DLPForwardEstimate.key: ("dlp_forward_estimate", "mGy.cm"),
    C.CTDIvolForwardEstimate.key: ("ctdivol_forward_estimate", "mGy"),
}
K_REASON = C.ReasonForProceeding.key
K_PERSON = C.PersonName.key
K_PROTOCOL = C.AcquisitionProtocol.key
K_TARGET = C.TargetRegion.key
K_TYPE = C.CTAcquisitionType.key
K_UID = C.IrradiationEventUID.key
K_PHANTOM = C.CTDIwPhantomType.key
K_SOURCE_ID = C.IdentificationOfTheXRaySource.key
K_NUMBER_OF_SOURCES = C.NumberOfXRaySources.key
K_SSDE = C.SizeSpecificDoseEstimate.key
K_METHOD = C.MeasurementMethod.key
K_WED = C.WaterEquivalentDiameter.key
# NUM items giving the patient's size in TID 10013 CT Dose: concept key -> (result field, concept for warnings)
SIZE_NUMBERS: dict[str, tuple[str, str]] = {
    C.MeasuredLateralDimension.key: ("lateral_dimension_mm", "Measured Lateral Dimension (113931, DCM)"),
    C.MeasuredAPDimension.key: ("ap_dimension_mm", "Measured AP Dimension (113932, DCM)"),
    C.DerivedEffectiveDiameter.key: ("effective_diameter_mm", "Derived Effective Diameter (113933, DCM)"),
    K_WED: ("water_equivalent_diameter_mm", "Water Equivalent Diameter (113980, DCM)"),
}
SSDE_METHOD_CODES = {k: c for k, (c, _size) in C.SSDE_METHODS.items()}
# an SSDE above this many times the event's CTDIvol is not a size correction (AAPM 204/220 factors are < 4)
SSDE_MAX_RATIO = 10.0


def is_ct_dose_report(root: Node) -> bool:
    """True when a 113701 report holds CT content (Procedure reported = CT, or any CT Acquisition container)."""
    for child in root.children:
        if child.concept == K_ACQUISITION or child.concept == K_ACCUMULATED:
            return True
        if child.concept == K_PROCEDURE and child.value is not None and child.value.key == CT_PROCEDURE:
            return True
    return False


def read_ct_radiation_dose(root: Node, report: Report) -> dict[str, Any]:
    """TID 10011: the ``ct`` part of the contract (accumulated data and every irradiation event)."""
    ct: dict[str, Any] = {"total_dlp_mgycm": None, "total_events": None, "events": []}
    accumulated = None
    acquisitions: list[Node] = []
    procedure_seen = False
    for child in root.children:
        concept = child.concept
        if concept == K_ACQUISITION:
            acquisitions.append(child)
        elif concept == K_ACCUMULATED:
            accumulated = child
        elif concept == K_PROCEDURE:
            procedure_seen = True
            if child.value is None:
                report.warn("Procedure reported (121058, DCM)", "empty code")
            elif child.value.key == CT_PROCEDURE and not child.children:
                report.warn("Procedure reported (121058, DCM)", "without its Has Intent modifier (TID 10011)")
    if not procedure_seen:
        report.warn("Procedure reported (121058, DCM)", "missing (mandatory in TID 10011)")
    if not acquisitions:  # tolerate vendors that nest the events one level down
        acquisitions = [n for n in root.descendants() if n.concept == K_ACQUISITION]
    if accumulated is None:
        report.warn("CT Accumulated Dose Data (113811, DCM)", "missing (mandatory in TID 10011)")
    else:
        for item in accumulated.children:
            if item.concept == K_TOTAL_DLP:
                ct["total_dlp_mgycm"] = report.measured(
                    item, "mGy.cm", "CT Dose Length Product Total (113813, DCM)"
                )
            elif item.concept == K_TOTAL_EVENTS:
                n = report.number(item.value, "Total Number of Irradiation Events (113812, DCM)")
                if n is not None and n >= 0 and float(n).is_integer():
                    ct["total_events"] = int(n)
                elif n is not None:
                    report.warn(
                        "Total Number of Irradiation Events (113812, DCM)", f"not a count {n!r}; not stored"
                    )
    ct["events"] = [read_ct_acquisition(node, report) for node in acquisitions]
    if ct["total_events"] is not None and ct["total_events"] != len(ct["events"]):
        report.warn(
            "Total Number of Irradiation Events (113812, DCM)",
            f"says {ct['total_events']} but the report holds {len(ct['events'])} CT Acquisition containers",
        )
    return ct


def read_ct_acquisition(node: Node, report: Report) -> dict[str, Any]:
    """TID 10013 CT Irradiation Event Data (with 10014 and 10015 wherever they are nested)."""
    event = empty_event()
    sources: list[dict[str, Any]] = []
    _collect(node, event, sources, None, report)
    event["sources"] = sources
    uid = event["irradiation_event_uid"]
    label = f"CT Acquisition {uid or '(no Irradiation Event UID)'}"
    if uid is None:
        report.warn(f"{label}: Irradiation Event UID (113769, DCM)", "missing (mandatory in TID 10013)")
    if event["ctdivol_mgy"] is None and event["acquisition_type"] not in ("Constant Angle Acquisition", None):
        report.warn(f"{label}: Mean CTDIvol (113830, DCM)", "absent")
    if event["ssde_mgy"] is not None:
        _check_ssde(event, label, report)
    return event


def _method(node: Node, table: dict[str, str], codes: dict, report: Report) -> tuple[str | None, str | None]:
    """(meaning, key) of the Measurement Method modifier of ``node`` (a CODE child with that concept, or whose
    value is in the method value set ``table``)."""
    for child in node.children:
        if child.value_type != "CODE":
            continue
        value = child.value if type(child.value) is Code else None
        key = value.key if value is not None and value.value else None
        if child.concept == K_METHOD or (key is not None and key in table):
            meaning, key = coded(value)
            if key is None:
                report.warn("Measurement Method (370129005, SCT)", "empty code")
                return None, None
            return C.canonical(key, table, codes, report.text(meaning, "Measurement Method")), key
    return None, None


def _ssde_item(item: Node, event: dict, report: Report) -> None:
    """NUM (113930, DCM) with its method (CID 10023) and any size items nested under it."""
    event["ssde_mgy"] = report.measured(
        item, "mGy", "Size Specific Dose Estimate (113930, DCM)", positive=True
    )
    event["ssde_method"], event["ssde_method_code"] = _method(
        item, C.SSDE_METHOD_BY_KEY, SSDE_METHOD_CODES, report
    )
    for child in item.children:
        if child.concept in SIZE_NUMBERS:
            _size_item(child, event, report)


def _size_item(item: Node, event: dict, report: Report) -> None:
    """A patient-size NUM of TID 10013 (lateral, AP, effective or water-equivalent diameter), in mm."""
    field_, concept = SIZE_NUMBERS[item.concept]
    value = report.measured(item, "mm", concept, positive=True)
    if value is None:
        return
    event[field_] = value
    if item.concept == K_WED:
        event["water_equivalent_diameter_method"], event["water_equivalent_diameter_method_code"] = _method(
            item, C.WED_METHOD_BY_KEY, C.WED_METHODS, report
        )


def _check_ssde(event: dict, label: str, report: Report) -> None:
    """An SSDE far above its CTDIvol is dropped (warned); the size it used is chosen by its method, else the
    water-equivalent diameter, else the effective diameter."""
    ssde, ctdivol = event["ssde_mgy"], event["ctdivol_mgy"]
    if ctdivol is not None and ssde > SSDE_MAX_RATIO * ctdivol:
        report.warn(
            f"{label}: Size Specific Dose Estimate (113930, DCM)",
            f"implausible value {ssde:g} mGy, more than {SSDE_MAX_RATIO:g} × the CTDIvol {ctdivol:g} mGy; not stored",
        )
        event["ssde_mgy"] = None
        return
    method = C.SSDE_METHOD_BY_KEY.get(event["ssde_method_code"] or "")
    kind = C.SSDE_METHODS[method][1] if method else None
    if kind is None:
        kind = next(
            (k for k in ("water_equivalent_diameter", "effective_diameter") if event[f"{k}_mm"]), None
        )
    if kind == "lateral_plus_ap":
        lateral, ap = event["lateral_dimension_mm"], event["ap_dimension_mm"]
        size = None if lateral is None or ap is None else round(lateral + ap, 6)
    else:
        size = event.get(f"{kind}_mm") if kind else None
    if size is not None:
        event["ssde_size_mm"], event["ssde_size_kind"] = size, kind


def _collect(node: Node, event: dict, sources: list, context: str | None, report: Report) -> None:
    for item in node.children:
        concept = item.concept
        vt = item.value_type
        if vt == "CONTAINER":
            if concept == K_SOURCE:
                source = empty_source()
                _collect_source(item, source, report)
                sources.append(source)
            elif concept == K_ALERT:
                _collect(item, event, sources, "alert", report)
            elif concept == K_NOTIFICATION:
                _collect(item, event, sources, "notification", report)
            else:
                _collect(item, event, sources, context, report)
            continue
        if context is not None:
            _dose_check_item(item, event["dose_check"], context, report)
            continue
        spec = EVENT_NUMBERS.get(concept)
        if spec is not None:
            event[spec[0]] = report.measured(item, spec[1], item.concept_meaning or concept)
        elif concept == K_UID:
            event["irradiation_event_uid"] = report.text(item.value, "Irradiation Event UID")
        elif concept == K_PROTOCOL:
            event["acquisition_protocol"] = report.text(item.value, "Acquisition Protocol (125203, DCM)")
        elif concept == K_TARGET:
            if item.value is None or not item.value.value:
                report.warn("Target Region (123014, DCM)", "empty code")
            else:
                key = item.value.key
                event["target_region"] = C.canonical(key, C.TARGET_REGION_BY_KEY, C.TARGET_REGIONS,
                                                     report.text(item.value.meaning, "Target Region"))  # fmt: skip
                event["target_region_code"] = key
        elif concept == K_TYPE:
            meaning, key = coded(item.value)
            if key is None:
                report.warn("CT Acquisition Type (113820, DCM)", "empty code")
            else:
                event["acquisition_type"] = C.canonical(
                    key, C.ACQUISITION_TYPE_BY_KEY, C.CT_ACQUISITION_TYPES, meaning
                )
                event["acquisition_type_code"] = key
                if key not in C.ACQUISITION_TYPE_BY_KEY:
                    report.warn("CT Acquisition Type (113820, DCM)", f"{key} is not in CID 10013")
        elif concept == K_PHANTOM:
            meaning, key = coded(item.value)
            if key is not None:
                event["phantom"] = C.PHANTOM_BY_KEY.get(key)
                event["phantom_code"] = key
                if event["phantom"] is None:
                    report.warn(
                        "CTDIw Phantom Type (113835, DCM)",
                        f"{key} {meaning!r} is neither head 16 nor body 32",
                    )
        elif concept == K_SSDE:
            _ssde_item(item, event, report)
        elif concept in SIZE_NUMBERS:
            _size_item(item, event, report)
        elif concept in SOURCE_NUMBERS or concept == K_SOURCE_ID:  # source items outside their container
            if not sources:
                sources.append(empty_source())
            _source_item(item, sources[-1], report)


def _collect_source(node: Node, source: dict, report: Report) -> None:
    numbers, measured = SOURCE_NUMBERS.get, report.measured
    for item in node.children:  # _source_item, inline
        concept = item.concept
        spec = numbers(concept)
        if spec is not None:
            source[spec[0]] = measured(item, spec[1], item.concept_meaning or concept)
        elif concept == K_SOURCE_ID:
            source["id"] = report.text(item.value, "Identification of the X-Ray Source (113832, DCM)")


def _source_item(item: Node, source: dict, report: Report) -> None:
    spec = SOURCE_NUMBERS.get(item.concept)
    if spec is not None:
        field_, quantity = spec
        source[field_] = report.measured(item, quantity, item.concept_meaning or item.concept)
    elif item.concept == K_SOURCE_ID:
        source["id"] = report.text(item.value, "Identification of the X-Ray Source (113832, DCM)")


def _dose_check_item(item: Node, check: dict, context: str, report: Report) -> None:
    """TID 10015: one item of an alert or a notification container."""
    table = ALERT_ITEMS if context == "alert" else NOTIFICATION_ITEMS
    spec = table.get(item.concept)
    if spec is not None:
        field_, quantity = spec
        if quantity is None:
            key = item.value.key if item.value is not None else None
            check[field_] = C.YES_NO_BY_KEY.get(key) if key else None
            if key and key not in C.YES_NO_BY_KEY:
                report.warn(item.concept_meaning or item.concept, f"{key} is neither Yes nor No")
        else:
            check[field_] = report.measured(item, quantity, item.concept_meaning or item.concept)
    elif item.concept == K_REASON:
        check[f"{context}_reason_for_proceeding"] = report.text(
            item.value, "Reason for Proceeding (113907, DCM)"
        )
    elif item.concept == K_PERSON and context == "alert":
        check["alert_person_name"] = report.text(item.value, "Person Name (113870, DCM)")
    elif item.children:  # TID 1020 person participant nested under a container-less item
        for child in item.children:
            _dose_check_item(child, check, context, report)


__all__ = ["read_ct_radiation_dose", "read_ct_acquisition", "is_ct_dose_report", "empty_dose_check"]
