"""Protocol reader: what names the examination in the header (ProtocolName, SeriesDescription,
RequestedProcedureDescription, PerformedProcedureStepDescription, BodyPartExamined). Each CT acquisition's
Acquisition Protocol and Target Region come from TID 10013 (:mod:`nmdose.dose.ct_radiation_dose`)."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from nmdose.dose.header import get_value
from nmdose.dose.result import Report


def _safe(ds: Dataset, keyword: str) -> Any:
    return get_value(ds, keyword)


def read_protocol(ds: Dataset, report: Report) -> dict[str, Any]:
    """The ``protocol`` part of the contract."""
    requested = _safe(ds, "RequestedProcedureDescription")
    if not requested:
        for item in _safe(ds, "RequestAttributesSequence") or ():
            requested = _safe(item, "RequestedProcedureDescription") or _safe(
                item, "ScheduledProcedureStepDescription"
            )
            if requested:
                break
    return {
        "protocol_name": report.text(_safe(ds, "ProtocolName"), "Protocol Name (0018,1030)"),
        "series_description": report.text(_safe(ds, "SeriesDescription"), "Series Description (0008,103E)"),
        "requested_procedure": report.text(requested, "Requested Procedure Description (0032,1060)"),
        "performed_procedure": report.text(
            _safe(ds, "PerformedProcedureStepDescription"), "Performed Procedure Step Description (0040,0254)"
        ),
        "body_part": report.text(_safe(ds, "BodyPartExamined"), "Body Part Examined (0018,0015)"),
    }
