"""PET image header reader: RadiopharmaceuticalInformationSequence (PS3.3 C.8.9.2 PET Isotope module), shared with
the NM reader (C.8.4.10 NM Isotope module) which differs only in the unit of Radionuclide Total Dose.

The unit rule: PS3.3 defines Radionuclide Total Dose in Bq for PET and in MBq for NM, but vendors do not all
follow it. The value is taken in the modality's unit when it is a plausible activity for the nuclide in that unit
and not in the other; otherwise in the unit that makes it plausible; the rule that fired is recorded in
``activity_rule`` (and a warning when the file contradicts its modality's unit).
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

from pydicom.dataset import Dataset

from nmdose.dicom_sr import Code
from nmdose.dose import codes as C
from nmdose.dose.header import get_value
from nmdose.dose.result import Report, coded, empty_administration, iso_datetime, parse_dt, parse_tm

_NUCLIDE_TEXT = re.compile(r"(?i)\b(?:(F|C|N|O|Ga|Rb|Cu|Zr|I|Tc|In|Tl|Lu|Y|Ra|Sm)[-\s^]?(\d{1,3}m?)|(\d{1,3}m?)[-\s^]?"
                           r"(F|C|N|O|Ga|Rb|Cu|Zr|I|Tc|In|Tl|Lu|Y|Ra|Sm))\b")  # fmt: skip
_NUCLIDE_BY_TEXT = {k.lower(): k for k in C.RADIONUCLIDES}


_safe = get_value  # ``ds.get(keyword)``, None when absent or not convertible (nmdose.dose.header)


def _first_code(ds: Dataset, keyword: str) -> Code | None:
    seq = _safe(ds, keyword)
    if not seq:
        return None
    item = seq[0]
    value = _safe(item, "CodeValue") or _safe(item, "LongCodeValue") or ""
    return Code(
        str(value), str(_safe(item, "CodingSchemeDesignator") or ""), str(_safe(item, "CodeMeaning") or "")
    )


def nuclide_key(code_key: str | None, agent_key: str | None, text: str | None) -> str | None:
    """Our short nuclide name from the nuclide code, else the agent code, else the agent's free text."""
    if code_key and code_key in C.RADIONUCLIDE_BY_KEY:
        return C.RADIONUCLIDE_BY_KEY[code_key]
    if agent_key and agent_key in C.RADIOPHARMACEUTICAL_BY_KEY:
        return C.RADIOPHARMACEUTICALS[C.RADIOPHARMACEUTICAL_BY_KEY[agent_key]][1]
    if text:
        if re.search(r"(?i)\bfdg\b|fluorodeoxy", text):
            return "F18"
        m = _NUCLIDE_TEXT.search(text)
        if m:
            element = m.group(1) or m.group(4)
            mass = m.group(2) or m.group(3)
            return _NUCLIDE_BY_TEXT.get(f"{element}{mass}".lower())
    return None


def activity_in_mbq(value: float, modality: str, nuclide: str | None) -> tuple[float, str, bool]:
    """(activity in MBq, rule, contradicts the modality's unit) for a Radionuclide Total Dose value."""
    lo, hi = C.ACTIVITY_RANGE_MBQ.get(nuclide or "", C.DEFAULT_ACTIVITY_RANGE_MBQ)
    as_bq, as_mbq = value / 1e6, value
    fits_bq, fits_mbq = lo <= as_bq <= hi, lo <= as_mbq <= hi
    basis = "nuclide_range" if nuclide else "magnitude"
    if modality == "PT":
        if fits_bq or not fits_mbq:
            return as_bq, "pt_header_bq", False
        return as_mbq, f"pt_header_mbq_by_{basis}", True
    if fits_mbq or not fits_bq:
        return as_mbq, "nm_header_mbq", False
    return as_bq, f"nm_header_bq_by_{basis}", True


def read_radiopharmaceutical_information(ds: Dataset, modality: str, report: Report) -> list[dict[str, Any]]:
    """Every item of RadiopharmaceuticalInformationSequence as a contract administration."""
    seq = _safe(ds, "RadiopharmaceuticalInformationSequence")
    if not seq:
        report.warn("RadiopharmaceuticalInformationSequence (0054,0016)", "absent or empty")
        return []
    out = []
    for item in seq:
        out.append(_read_item(ds, item, modality, report))
    return out


def _read_item(ds: Dataset, item: Dataset, modality: str, report: Report) -> dict[str, Any]:
    adm = empty_administration()
    agent_code = _first_code(item, "RadiopharmaceuticalCodeSequence")
    nuclide_code = _first_code(item, "RadionuclideCodeSequence")
    agent_text = report.text(_safe(item, "Radiopharmaceutical"), "Radiopharmaceutical (0018,0031)")
    meaning, key = coded(agent_code)
    if key is not None:
        adm["agent"] = C.canonical(
            key, C.RADIOPHARMACEUTICAL_BY_KEY, C.AGENT_CODES, report.text(meaning, "agent")
        )
        adm["agent_code"] = key
    else:
        adm["agent"] = agent_text
    meaning, nkey = coded(nuclide_code)
    if nkey is not None:
        adm["radionuclide"] = C.canonical(nkey, C.RADIONUCLIDE_BY_KEY, C.NUCLIDE_CODES, meaning)
        adm["radionuclide_code"] = nkey
    nuclide = nuclide_key(nkey, key, agent_text or (agent_code.meaning if agent_code else None))

    total = report.number(_safe(item, "RadionuclideTotalDose"), "Radionuclide Total Dose (0018,1074)")
    if total is not None:
        if total <= 0:
            report.warn("Radionuclide Total Dose (0018,1074)", f"implausible value {total!r}; not stored")
        else:
            mbq, rule, contradicts = activity_in_mbq(total, modality, nuclide)
            adm["activity_rule"] = rule
            if contradicts:
                unit = "Bq" if modality == "PT" else "MBq"
                report.warn(
                    "Radionuclide Total Dose (0018,1074)",
                    f"{total:g} read as {'MBq' if unit == 'Bq' else 'Bq'}, not {unit} as PS3.3 says for {modality} "
                    f"(rule {rule}, nuclide {nuclide or 'unknown'})",
                )
            adm["activity_mbq"] = report.plausible(
                mbq, "MBq", "Radionuclide Total Dose (0018,1074)", positive=True
            )
    half_life = report.number(_safe(item, "RadionuclideHalfLife"), "Radionuclide Half Life (0018,1075)")
    adm["half_life_s"] = report.plausible(half_life, "s_half_life", "Radionuclide Half Life (0018,1075)")
    if nuclide and adm["half_life_s"] is not None:
        expected = C.HALF_LIFE_S.get(nuclide)
        if expected and abs(adm["half_life_s"] - expected) / expected > 0.05:
            report.warn(
                "Radionuclide Half Life (0018,1075)",
                f"{adm['half_life_s']:g} s differs from {nuclide}'s {expected:g} s by more than 5 %",
            )
    fraction = report.number(_safe(item, "RadionuclidePositronFraction"), "Radionuclide Positron Fraction")
    if fraction is not None and 0 <= fraction <= 1:
        adm["positron_fraction"] = fraction
    route = report.text(_safe(item, "RadiopharmaceuticalRoute"), "Radiopharmaceutical Route (0018,1070)")
    route_code = _first_code(item, "AdministrationRouteCodeSequence")
    meaning, rkey = coded(route_code)
    if rkey is not None:
        adm["route"] = C.canonical(rkey, C.ROUTE_BY_KEY, C.ROUTES, meaning)
        adm["route_code"] = rkey
    else:
        adm["route"] = route
    start, source = _start_datetime(ds, item, report)
    adm["start_datetime"], adm["start_datetime_source"] = iso_datetime(start), source
    stop = parse_dt(_safe(item, "RadiopharmaceuticalStopDateTime"))
    adm["stop_datetime"] = iso_datetime(stop)
    return adm


def _start_datetime(ds: Dataset, item: Dataset, report: Report) -> tuple[_dt.datetime | None, str | None]:
    """RadiopharmaceuticalStartDateTime, else RadiopharmaceuticalStartTime on the acquisition date, else on the
    study date; never on the series date (a series reconstructed or re-sent later carries that later day). A start
    time after the acquisition time (else the study time) of that day was the day before (injected before
    midnight, imaged after): the source then ends in ``-1day``."""
    raw = _safe(item, "RadiopharmaceuticalStartDateTime")
    value = parse_dt(raw)
    if value is not None:
        return value, "header_start_datetime"
    if raw:
        report.warn("Radiopharmaceutical Start DateTime (0018,1078)", f"not a DICOM date-time {raw!r}")
    time_ = parse_tm(_safe(item, "RadiopharmaceuticalStartTime"))
    if time_ is None:
        return None, None
    acquisition_time = parse_tm(_safe(ds, "AcquisitionTime"))
    for date_kw, time_kw in (("AcquisitionDate", "AcquisitionTime"), ("StudyDate", "StudyTime")):
        date_value = parse_dt(_safe(ds, date_kw))
        if date_value is None:
            continue
        start = _dt.datetime.combine(date_value.date(), time_)
        source = f"header_start_time+{date_kw}"
        reference, reference_kw = acquisition_time, "AcquisitionTime"
        if reference is None:
            reference, reference_kw = parse_tm(_safe(ds, time_kw)), time_kw
        if reference is not None and time_ > reference:
            start -= _dt.timedelta(days=1)  # injected before midnight, imaged after
            source += "-1day"
            report.warn(
                "Radiopharmaceutical Start Time (0018,1072)",
                f"after {reference_kw} on {date_kw}; taken as the day before",
            )
        return start, source
    report.warn(
        "Radiopharmaceutical Start Time (0018,1072)",
        "no AcquisitionDate or StudyDate in the header to place it on; not stored",
    )
    return None, None


def read_pet_image_header(ds: Dataset, report: Report) -> list[dict[str, Any]]:
    """PET Isotope module (C.8.9.2): administrations, Radionuclide Total Dose in Bq by the standard."""
    return read_radiopharmaceutical_information(ds, "PT", report)
