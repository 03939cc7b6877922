"""Radiopharmaceutical Radiation Dose reader: TID 10021 with TID 10022 (administration event data) and
TID 10023 (patient characteristics), from a Radiopharmaceutical Radiation Dose SR."""

from __future__ import annotations

from typing import Any

from nmdose.dicom_sr import Node
from nmdose.dose import codes as C
from nmdose.dose.result import Report, coded, empty_administration, iso_datetime, parse_dt

K_ADMINISTRATION = C.RadiopharmaceuticalAdministration.key
K_AGENT = C.RadiopharmaceuticalAgent.key
K_NUCLIDE = C.Radionuclide.key
K_HALF_LIFE = C.RadionuclideHalfLife.key
K_EVENT_UID = C.RadiopharmaceuticalAdministrationEventUID.key
K_ACTIVITY = C.AdministeredActivity.key
K_PRE = C.PreAdministrationMeasuredActivity.key
K_POST = C.PostAdministrationMeasuredActivity.key
K_START = C.RadiopharmaceuticalStartDateTime.key
K_STOP = C.RadiopharmaceuticalStopDateTime.key
K_ROUTE = C.RouteOfAdministration.key
K_PATIENT = C.PatientCharacteristics.key
K_AGE = C.SubjectAge.key
K_SEX = C.SubjectSex.key
K_HEIGHT = C.PatientHeight.key
K_WEIGHT = C.PatientWeight.key
K_EFFECTIVE_DOSE = C.EffectiveDose.key


def _concept(node: Node) -> str:
    return C.LEGACY_CONCEPT_ALIASES.get(node.concept, node.concept)


def read_radiopharmaceutical_dose(root: Node, report: Report) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """TID 10021: (administrations, patient characteristics with the contract's patient keys)."""
    administrations: list[dict[str, Any]] = []
    patient: dict[str, Any] = {"age_years": None, "sex": None, "weight_kg": None, "height_m": None}
    containers = [c for c in root.children if c.concept == K_ADMINISTRATION and c.value_type == "CONTAINER"]
    if not containers:
        containers = [
            c for c in root.descendants() if c.concept == K_ADMINISTRATION and c.value_type == "CONTAINER"
        ]
    if not containers:
        report.warn(
            "Radiopharmaceutical Administration (113502, DCM)", "no administration container (TID 10022)"
        )
    for container in containers:
        administrations.append(read_administration(container, report))
    for node in root.descendants():
        if node.concept == K_PATIENT:
            _read_patient(node, patient, report)
            break
    return administrations, patient


def read_administration(container: Node, report: Report) -> dict[str, Any]:
    """TID 10022 Radiopharmaceutical Administration Event Data."""
    adm = empty_administration()
    adm["activity_rule"] = "rrdsr_units"
    effective = None
    for item in container.descendants():
        concept = _concept(item)
        if concept == K_AGENT:
            meaning, key = coded(item.value)
            if key is None:
                report.warn("Radiopharmaceutical agent (349358000, SCT)", "empty code")
            else:
                adm["agent"] = C.canonical(
                    key, C.RADIOPHARMACEUTICAL_BY_KEY, C.AGENT_CODES, report.text(meaning, "agent")
                )
                adm["agent_code"] = key
        elif concept == K_NUCLIDE:
            meaning, key = coded(item.value)
            if key is None:
                report.warn("Radionuclide (89457008, SCT)", "empty code")
            else:
                adm["radionuclide"] = C.canonical(key, C.RADIONUCLIDE_BY_KEY, C.NUCLIDE_CODES, meaning)
                adm["radionuclide_code"] = key
        elif concept == K_HALF_LIFE:
            adm["half_life_s"] = report.measured(
                item, "s", "Radionuclide Half Life (304283002, SCT)", positive=True
            )
        elif concept == K_ACTIVITY:
            adm["activity_mbq"] = report.measured(
                item, "MBq", "Administered activity (113507, DCM)", positive=True
            )
        elif concept == K_PRE:
            adm["pre_measured_activity_mbq"] = report.measured(
                item, "MBq", "Pre-Administration Measured Activity"
            )
        elif concept == K_POST:
            adm["post_measured_activity_mbq"] = report.measured(
                item, "MBq", "Post-Administration Measured Activity"
            )
        elif concept == K_START:
            adm["start_datetime"] = _datetime(
                item, "Radiopharmaceutical Start DateTime (123003, DCM)", report
            )
            adm["start_datetime_source"] = "rrdsr"
        elif concept == K_STOP:
            adm["stop_datetime"] = _datetime(item, "Radiopharmaceutical Stop DateTime (123004, DCM)", report)
        elif concept == K_ROUTE:
            meaning, key = coded(item.value)
            if key is not None:
                adm["route"] = C.canonical(key, C.ROUTE_BY_KEY, C.ROUTES, meaning)
                adm["route_code"] = key
        elif concept == K_EVENT_UID:
            adm["administration_event_uid"] = report.text(
                item.value, "Radiopharmaceutical Administration Event UID"
            )
        elif concept == K_EFFECTIVE_DOSE and effective is None:
            effective = report.measured(item, "mSv", "Effective Dose (113839, DCM)")
    if effective is not None:
        adm["effective_dose_msv"] = effective
    if adm["activity_mbq"] is None:
        report.warn("Administered activity (113507, DCM)", "absent or unusable")
    return adm


def _datetime(item: Node, concept: str, report: Report) -> str | None:
    value = parse_dt(item.value)
    if value is None and item.value:
        report.warn(concept, f"not a DICOM date-time {item.value!r}; not stored")
    return iso_datetime(value)


def _read_patient(node: Node, patient: dict[str, Any], report: Report) -> None:
    """TID 10023 Radiopharmaceutical Administration Patient Characteristics."""
    for item in node.children:
        if item.concept == K_AGE:
            patient["age_years"] = report.measured(item, "a", "Subject Age (121033, DCM)")
        elif item.concept == K_SEX:
            key = item.value.key if item.value is not None else None
            patient["sex"] = C.SEX_BY_KEY.get(key) if key else None
        elif item.concept == K_HEIGHT:
            patient["height_m"] = report.measured(item, "m", "Patient Height (8302-2, LN)", positive=True)
        elif item.concept == K_WEIGHT:
            patient["weight_kg"] = report.measured(item, "kg", "Patient Weight (29463-7, LN)", positive=True)
