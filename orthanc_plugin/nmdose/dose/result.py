"""The JSON contract of ``nmdose dose parse`` (issue 6 item 5) and the warning collector the readers share.

Every key of the contract is always present; a value the file does not hold is ``None``, never invented.
Values are normalised (mGy, mGy·cm, MBq, s, mm, kV, mA, kg, m), dates ISO 8601, coded values as their meaning
with a ``*_code`` sibling (``"SCT:51185008"``).
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from nmdose.dicom_sr import MEASURED_CACHE, Code, Node
from nmdose.dose.units import FACTORS as _FACTORS
from nmdose.dose.units import convert, unit_text

KINDS = ("ct_rdsr", "ct_esr", "radiopharmaceutical_rdsr", "pet_image", "nm_image", "ct_dose_screen", "other")

# Values beyond these are not stored (a warning names them): physically implausible for a diagnostic exam.
PLAUSIBLE_MAX: dict[str, float] = {
    "mGy": 5000.0,
    "mGy.cm": 100000.0,
    "MBq": 50000.0,
    "s": 1e8,  # half-lives of long-lived nuclides are in seconds too
    "mm": 5000.0,
    "kV": 200.0,
    "mA": 5000.0,
    "kg": 500.0,
    "m": 3.0,
    "ratio": 20.0,
    "a": 150.0,
    "mSv": 1000.0,
}
_INF = math.inf


def empty_result(file: str) -> dict[str, Any]:
    """The contract with every key present and nothing filled in."""
    return {
        "file": file,
        "status": "ok",
        "error": None,
        "warnings": [],
        "kind": "other",
        "sop_class_uid": None,
        "sop_instance_uid": None,
        "study_instance_uid": None,
        "series_instance_uid": None,
        "modality": None,
        "manufacturer": None,
        "model_name": None,
        "station_name": None,
        "device_serial_number": None,
        "software_versions": None,  # SoftwareVersions (0018,1020), several values joined by a backslash
        "device_observer_uid": None,  # TID 1004 Device Observer UID (121012) of a dose report's root
        "study_date": None,
        "study_time": None,  # StudyTime (0008,0030) as HH:MM:SS (dose.study.study_time, the report's workload)
        "study_description": None,
        "accession_number": None,
        "patient_id": None,  # PatientID, for the ingest's pseudonym only: never stored in `dose`
        "patient": {"age_years": None, "sex": None, "weight_kg": None, "height_m": None},
        "protocol": {
            "protocol_name": None,
            "series_description": None,
            "requested_procedure": None,
            "performed_procedure": None,
            "body_part": None,
        },
        "ct": {"total_dlp_mgycm": None, "total_events": None, "events": []},
        "radiopharmaceutical": [],
    }


def empty_event() -> dict[str, Any]:
    """One CT irradiation event of the contract (TID 10013)."""
    return {
        "irradiation_event_uid": None,
        "acquisition_protocol": None,
        "target_region": None,
        "target_region_code": None,
        "acquisition_type": None,
        "acquisition_type_code": None,
        "ctdivol_mgy": None,
        "dlp_mgycm": None,
        "phantom": None,
        "phantom_code": None,
        "scanning_length_mm": None,
        "exposure_time_s": None,
        "pitch": None,
        "nominal_total_collimation_mm": None,
        "nominal_single_collimation_mm": None,
        "sources": [],
        "dose_check": empty_dose_check(),
        **empty_ssde(),
    }


def empty_ssde() -> dict[str, Any]:
    """TID 10013 CT Dose: the size-specific dose estimate and the patient size behind it (None when absent)."""
    return {
        "ssde_mgy": None,
        "ssde_method": None,  # CID 10023 meaning (ours), e.g. "Estimated from Water Equivalent Diameter"
        "ssde_method_code": None,
        "ssde_size_mm": None,  # the size the estimate used (by its method, else Dw, else effective diameter)
        "ssde_size_kind": None,  # water_equivalent_diameter | effective_diameter | lateral_dimension | ...
        "water_equivalent_diameter_mm": None,
        "water_equivalent_diameter_method": None,  # CID 10024 meaning
        "water_equivalent_diameter_method_code": None,
        "effective_diameter_mm": None,
        "lateral_dimension_mm": None,
        "ap_dimension_mm": None,
    }


def empty_source() -> dict[str, Any]:
    """One X-ray source of an event (TID 10013 CT X-Ray Source Parameters)."""
    return {"id": None, "kvp": None, "max_tube_current_ma": None, "tube_current_ma": None,
            "exposure_time_per_rotation_s": None}  # fmt: skip


def empty_dose_check() -> dict[str, Any]:
    """TID 10015 CT Dose Check Details."""
    return {
        "dlp_alert_value_configured": None,
        "ctdivol_alert_value_configured": None,
        "dlp_alert_value": None,
        "ctdivol_alert_value": None,
        "accumulated_dlp_forward_estimate": None,
        "accumulated_ctdivol_forward_estimate": None,
        "alert_reason_for_proceeding": None,
        "alert_person_name": None,
        "dlp_notification_value_configured": None,
        "ctdivol_notification_value_configured": None,
        "dlp_notification_value": None,
        "ctdivol_notification_value": None,
        "dlp_forward_estimate": None,
        "ctdivol_forward_estimate": None,
        "notification_reason_for_proceeding": None,
    }


def empty_administration() -> dict[str, Any]:
    """One radiopharmaceutical administration (TID 10022 or an image header's information item)."""
    return {
        "agent": None,
        "agent_code": None,
        "radionuclide": None,
        "radionuclide_code": None,
        "activity_mbq": None,
        "start_datetime": None,
        "stop_datetime": None,
        "half_life_s": None,
        "route": None,
        "route_code": None,
        "activity_rule": None,
        "administration_event_uid": None,
        "pre_measured_activity_mbq": None,
        "post_measured_activity_mbq": None,
        "positron_fraction": None,
        "start_datetime_source": None,
        "pre_measured_datetime": None,  # when the pre-administration activity was measured (TID 10022)
        "post_measured_datetime": None,  # when the residual was measured
        "plausibility": None,  # a warning when the activity is implausible for the agent
    }


class Report:
    """Collects warnings for one file; each names the file and the concept."""

    __slots__ = ("file", "warnings", "charset_fix")

    def __init__(self, file: str, charset_fix: bool = False):
        self.file = file
        self.warnings: list[str] = []
        self.charset_fix = charset_fix

    def warn(self, concept: str, message: str) -> None:
        self.warnings.append(f"{self.file}: {concept}: {message}")

    # --------------------------------------------------------------------------------- values
    def text(self, value: Any, concept: str) -> str | None:
        """A string value, stripped; UTF-8 bytes stored under a Latin-1 declaration are repaired (warned)."""
        if value is None:
            return None
        s = value.strip() if type(value) is str else str(value).strip()
        if "\x00" in s:
            s = s.strip("\x00").strip()
        if not s:
            return None
        if self.charset_fix and not s.isascii():
            try:
                fixed = s.encode("latin-1").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                return s
            if fixed != s:
                self.warn(concept, "UTF-8 bytes under a Latin-1 (ISO_IR 100) declaration; read as UTF-8")
                return fixed
        return s

    def number(self, value: Any, concept: str) -> float | None:
        """A float from a DS/IS/FD value; a multi-valued DS gives its first value with a warning."""
        if value is None or value == "":
            return None
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            values = list(value)
            if not values:
                return None
            self.warn(concept, f"{len(values)} values in a single-valued number {values!r}; first one used")
            value = values[0]
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        try:
            result = float(value)
        except (TypeError, ValueError):
            text_ = str(value).strip()
            if "\\" in text_:
                return self.number(text_.split("\\"), concept)
            self.warn(concept, f"not a number {text_!r}; not stored")
            return None
        if math.isnan(result) or math.isinf(result):
            self.warn(concept, f"not a finite number {value!r}; not stored")
            return None
        return result

    def measured(
        self, node: Node | None, quantity: str, concept: str, *, positive: bool = False
    ) -> float | None:
        """A NUM item's value converted to ``quantity`` from its own unit, checked for plausibility."""
        if node is None:
            return None
        raw = node.value
        unit = node.unit
        key = None
        value = None
        if type(raw) is str:  # the usual NumericValue text: number()'s float() without its other cases
            if unit is None or type(unit) is Code:
                key = (raw, unit, quantity)
                hit = MEASURED_CACHE.data.get(key)
                if hit is not None:
                    return hit
            try:
                value = float(raw)
            except ValueError:
                pass
            else:
                if value - value != 0.0:  # NaN or infinite: number() words it
                    value = None
        if value is None:
            key = None
            value = self.number(raw, concept)
            if value is None:
                return None
        factor = _FACTORS[quantity].get(unit.value or unit.meaning) if unit is not None else None
        if factor is None:
            key = None
            converted, problem = convert(value, unit_text(unit), quantity)
            if problem is not None:
                self.warn(concept, f"{value!r}: {problem}; not stored")
                return None
        else:
            converted = value * factor
        if converted > 0.0 and converted <= PLAUSIBLE_MAX.get(quantity, _INF):
            answer = round(converted, 6)
            if key is not None:  # plain text, a unit of the table, plausible: depends on nothing else
                MEASURED_CACHE.put(key, 1, answer)
            return answer
        return self.plausible(converted, quantity, concept, positive=positive)

    def plausible(
        self, value: float | None, quantity: str, concept: str, *, positive: bool = False
    ) -> float | None:
        """``value`` when physically plausible; otherwise None with a warning."""
        if value is None:
            return None
        if value < 0 or (positive and value == 0):
            self.warn(concept, f"implausible value {value!r} {quantity}; not stored")
            return None
        limit = PLAUSIBLE_MAX.get(quantity)
        if limit is not None and value > limit:
            self.warn(concept, f"implausible value {value!r} {quantity} (above {limit:g}); not stored")
            return None
        return round(value, 6)


def coded(code: Code | None) -> tuple[str | None, str | None]:
    """(meaning, key) of a code, or (None, None)."""
    if code is None or not (code.value or code.meaning):
        return None, None
    return (code.meaning or None), (code.key if code.value else None)


def iso_date(value: Any) -> str | None:
    """DICOM DA ``YYYYMMDD`` to ``YYYY-MM-DD``; None when not a date."""
    if not value:
        return None
    s = str(value).strip().replace("-", "").replace(".", "")
    if len(s) < 8 or not s[:8].isdigit():
        return None
    try:
        return _dt.date(int(s[:4]), int(s[4:6]), int(s[6:8])).isoformat()
    except ValueError:
        return None


def parse_dt(value: Any) -> _dt.datetime | None:
    """DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``, any precision down to the day) to a datetime."""
    if not value:
        return None
    s = str(value).strip()
    tz = None
    for sign in ("+", "-"):
        idx = s.find(sign, 4)
        if idx > 0 and len(s) - idx == 5 and s[idx + 1 :].isdigit():
            hours, minutes = int(s[idx + 1 : idx + 3]), int(s[idx + 3 :])
            delta = _dt.timedelta(hours=hours, minutes=minutes)
            tz = _dt.timezone(delta if sign == "+" else -delta)
            s = s[:idx]
            break
    frac = 0
    if "." in s:
        s, f = s.split(".", 1)
        f = (f + "000000")[:6]
        frac = int(f) if f.isdigit() else 0
    if not s.isdigit() or len(s) < 8:
        return None
    try:
        return _dt.datetime(
            int(s[0:4]),
            int(s[4:6]),
            int(s[6:8]),
            int(s[8:10] or 0),
            int(s[10:12] or 0),
            int(s[12:14] or 0),
            frac,
            tzinfo=tz,
        )
    except ValueError:
        return None


def parse_tm(value: Any) -> _dt.time | None:
    """DICOM TM ``HHMMSS.FFFFFF`` (or with colons) to a time."""
    if not value:
        return None
    s = str(value).strip().replace(":", "")
    frac = 0
    if "." in s:
        s, f = s.split(".", 1)
        f = (f + "000000")[:6]
        frac = int(f) if f.isdigit() else 0
    if not s.isdigit() or len(s) < 2:
        return None
    try:
        return _dt.time(int(s[0:2]), int(s[2:4] or 0), int(s[4:6] or 0), frac)
    except ValueError:
        return None


def iso_datetime(value: _dt.datetime | None) -> str | None:
    """ISO 8601 text of a datetime (seconds precision unless fractions are present)."""
    if value is None:
        return None
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
