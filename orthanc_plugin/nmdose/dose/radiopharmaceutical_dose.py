"""Radiopharmaceutical Radiation Dose reader: TID 10021 with TID 10022 (administration event data) and
TID 10023 (patient characteristics), from a Radiopharmaceutical Radiation Dose SR."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from nmdose.dicom_sr import Code, Node
from nmdose.dose import codes as C
from nmdose.dose.result import Report, coded, empty_administration, iso_datetime, parse_dt
from nmdose.dose.units import FACTORS

# an "activity" this large is Bq written as MBq (or another unit slip), never a real administration
LIKELY_BQ_MBQ = 1e5

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
            if adm["activity_mbq"] is None:
                adm["plausibility"] = looks_like_bq(item, report)
        elif concept == K_PRE:
            adm["pre_measured_activity_mbq"] = report.measured(
                item, "MBq", "Pre-Administration Measured Activity"
            )
            adm["pre_measured_datetime"] = _measurement_time(
                item, "Pre-Administration Measured Activity", report
            )
        elif concept == K_POST:
            adm["post_measured_activity_mbq"] = report.measured(
                item, "MBq", "Post-Administration Measured Activity"
            )
            adm["post_measured_datetime"] = _measurement_time(
                item, "Post-Administration Measured Activity", report
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


def _measurement_time(item: Node, concept: str, report: Report) -> str | None:
    """A DATETIME item under a measured activity (its measurement time, as some reports nest it)."""
    for child in item.children:
        if child.value_type == "DATETIME":
            return _datetime(child, f"{concept}: {child.concept_meaning or child.concept}", report)
    return None


def looks_like_bq(item: Node, report: Report) -> str | None:
    """For an administered activity the reader refused: a plausibility warning when its value, read in its unit,
    is at least 1e5 MBq (what Bq stored as MBq gives); None otherwise."""
    value = (
        report.number(item.value, "Administered activity (113507, DCM)") if item.value is not None else None
    )
    factor = FACTORS["MBq"].get(item.unit.value or item.unit.meaning) if item.unit is not None else None
    if value is None or factor is None or value * factor < LIKELY_BQ_MBQ:
        return None
    mbq = value * factor
    message = (
        f"{mbq:g} MBq is not a plausible activity: likely Bq stored as MBq ({mbq / 1e6:g} MBq if read as Bq); "
        "not stored"
    )
    report.warn("Administered activity (113507, DCM)", f"plausibility: {message}")
    return message


def add_observation_times(ds: Dataset, administrations: list[dict[str, Any]], report: Report) -> None:
    """Measurement times of the pre/post-administration activities from their content items' Observation
    DateTime (0040,A032), the SR's own way to date an observation that differs from the document's time. The
    content walk keeps no Observation DateTime, so this reads the few items again with pydicom (only for reports
    that have such measurements without a nested time)."""
    try:
        times = _observation_times(ds)
    except Exception as exc:  # an unreadable item: the activities stay, without their times
        report.warn("Observation DateTime (0040,A032)", f"not readable ({type(exc).__name__}); not stored")
        return
    if len(times) != len(administrations):
        return
    for adm, found in zip(administrations, times, strict=True):
        for concept, field_, name in ((K_PRE, "pre", "Pre"), (K_POST, "post", "Post")):
            raw = found.get(concept)
            if raw is None or adm[f"{field_}_measured_datetime"] is not None:
                continue
            value = parse_dt(raw)
            if value is None:
                report.warn(f"{name}-Administration Measured Activity: Observation DateTime",
                            f"not a DICOM date-time {raw!r}; not stored")  # fmt: skip
            adm[f"{field_}_measured_datetime"] = iso_datetime(value)


def _observation_times(ds: Dataset) -> list[dict[str, str]]:
    def key(item: Dataset) -> str:
        seq = item.get("ConceptNameCodeSequence")
        if not seq:
            return ""
        return C.concept_key(Code(str(seq[0].get("CodeValue") or ""), str(seq[0].get("CodingSchemeDesignator") or ""),
                                  ""))  # fmt: skip

    def descend(items: Any) -> Any:
        for item in items or ():
            yield item
            yield from descend(item.get("ContentSequence"))

    def is_administration(item: Dataset) -> bool:
        return item.get("ValueType") == "CONTAINER" and key(item) == K_ADMINISTRATION

    top = list(ds.get("ContentSequence") or ())
    containers = [i for i in top if is_administration(i)] or [i for i in descend(top) if is_administration(i)]
    out = []
    for container in containers:
        found: dict[str, str] = {}
        for item in descend(container.get("ContentSequence")):
            concept = key(item)
            if concept in (K_PRE, K_POST):
                raw = item.get("ObservationDateTime")
                if raw:
                    found[concept] = str(raw)
        out.append(found)
    return out


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
