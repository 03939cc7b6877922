"""Philips "Dose Info" secondary-capture reader: one ExposureDoseSequence (0040,030E) item per scan (CTDIvol,
kVp, mA, exposure time) and the study's total DLP in the private element (00E1,xx21) of creator ELSCINT1.

These objects carry no Irradiation Event UID: events are numbered, and a study that also has an RDSR uses the
RDSR (see :func:`nmdose.dose.parse.merge_study`)."""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from nmdose.dose import codes as C
from nmdose.dose.header import get_value
from nmdose.dose.result import Report, empty_event, empty_source

PHILIPS_CREATOR = "ELSCINT1"
PHILIPS_GROUP = 0x00E1
PHILIPS_TOTAL_DLP = 0x21
# Acquisition Type (0018,9302) defined terms (PS3.3 C.8.15.3.2) -> (meaning, code key) of CID 10013, from the one
# table of CT acquisition types (nmdose.dose.codes); cone beam has no defined term there.
ACQUISITION_TYPES: dict[str, tuple[str, str]] = {
    term: (C.CT_ACQUISITION_TYPES[key].meaning, C.CT_ACQUISITION_TYPES[key].key)
    for term, key in (
        ("SPIRAL", "spiral"),
        ("SEQUENCED", "sequenced"),
        ("CONSTANT_ANGLE", "constant_angle"),
        ("STATIONARY", "stationary"),
        ("FREE", "free"),
    )
}


def _safe(ds: Dataset, keyword: str) -> Any:
    return get_value(ds, keyword)


def is_dose_screen(ds: Dataset) -> bool:
    """A secondary capture or CT object carrying ExposureDoseSequence."""
    return "ExposureDoseSequence" in ds


def _private_tag(ds: Dataset, group: int, creator: str, offset: int) -> int:
    """``ds.private_block(group, creator).get_tag(offset)`` without the dataset slice ``private_block`` builds to
    look for the creator, when every private creator of the group is a raw plain-ASCII LO (whose value does not
    depend on the character set); otherwise pydicom's ``private_block``."""
    first, last = group << 16 | 0x0010, group << 16 | 0x00FF
    for tag in sorted(t for t in ds.keys() if first <= t <= last):  # noqa: SIM118 (iterating a Dataset converts)
        elem = ds.get_item(tag, keep_deferred=True)
        raw = elem.value if type(elem) is RawDataElement and elem.VR == "LO" else None
        if type(raw) is not bytes or not raw.isascii() or b"\x1b" in raw:
            return ds.private_block(group, creator).get_tag(offset)
        if b"\\" not in raw and raw.decode("ascii").rstrip("\x00 ") == creator:  # pydicom's LO value
            return group << 16 | (tag & 0xFF) << 8 | offset
    raise KeyError(f"Private creator '{creator}' not found")


def private_total_dlp(ds: Dataset, report: Report) -> float | None:
    """Total DLP from (00E1,xx21) of private creator ELSCINT1, in mGy·cm (Philips writes it as DS)."""
    try:
        elem = ds.get(_private_tag(ds, PHILIPS_GROUP, PHILIPS_CREATOR, PHILIPS_TOTAL_DLP))
    except Exception:
        return None
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").strip("\x00 ")
    return report.plausible(report.number(value, "Philips total DLP (00E1,xx21 ELSCINT1)"), "mGy.cm",
                            "Philips total DLP (00E1,xx21 ELSCINT1)")  # fmt: skip


def read_dose_screen(ds: Dataset, report: Report) -> dict[str, Any]:
    """The ``ct`` part of the contract from a Philips Dose Info object."""
    events = []
    for index, item in enumerate(_safe(ds, "ExposureDoseSequence") or (), start=1):
        event = empty_event()
        label = f"ExposureDoseSequence item {index}"
        kind = str(_safe(item, "AcquisitionType") or "").strip().upper()
        if kind in ACQUISITION_TYPES:
            event["acquisition_type"], event["acquisition_type_code"] = ACQUISITION_TYPES[kind]
        event["ctdivol_mgy"] = report.plausible(report.number(_safe(item, "CTDIvol"), f"{label}: CTDIvol"), "mGy",
                                                f"{label}: CTDIvol (0018,9345)")  # fmt: skip
        exposure_ms = report.number(_safe(item, "ExposureTime"), f"{label}: Exposure Time (0018,1150)")
        event["exposure_time_s"] = report.plausible(
            None if exposure_ms is None else exposure_ms / 1000.0, "s", f"{label}: Exposure Time"
        )
        event["acquisition_protocol"] = report.text(
            _safe(item, "CommentsOnRadiationDose"), f"{label}: comments"
        )
        source = empty_source()
        source["kvp"] = report.plausible(
            report.number(_safe(item, "KVP"), f"{label}: KVP"), "kV", f"{label}: KVP"
        )
        current = _safe(item, "XRayTubeCurrentInmA")
        if current is None:
            current = _safe(item, "XRayTubeCurrent")
        source["tube_current_ma"] = report.plausible(report.number(current, f"{label}: X-Ray Tube Current"), "mA",
                                                     f"{label}: X-Ray Tube Current")  # fmt: skip
        if any(v is not None for v in source.values()):
            event["sources"] = [source]
        events.append(event)
    total = private_total_dlp(ds, report)
    if total is None:
        report.warn("Philips total DLP (00E1,xx21 ELSCINT1)", "absent")
    return {"total_dlp_mgycm": total, "total_events": len(events), "events": events}
