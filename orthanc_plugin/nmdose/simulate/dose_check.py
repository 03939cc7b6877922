"""The simulation's CT dose-check alerts (TID 10015, issue 16 item 3): a few of the simulated department's CT
studies carry the scanner's own dose-check alert and notification on their highest-CTDIvol event, with who
proceeded and why, as a scanner writes them when the technologist confirms a scan above the configured values
(NEMA XR 25). The dose alerts (`dose_check` rules, docs/alerts.md) then have something to find in `make demo`.

Only studies of the simulated department's scanners are touched (hand-built test studies keep the default
manufacturer "SIMULATED" and are never changed); which ones is decided by the StudyInstanceUID's hash, so the same
study always gets the same content."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

PERCENT = 3  # of the department's CT studies
UNTOUCHED_MANUFACTURER = "SIMULATED"
PERSON = "SIM^TECHNOLOGIST"
REASON = "Large patient; scan confirmed by the technologist"


def selected(study_uid: str, percent: int = PERCENT) -> bool:
    return int.from_bytes(hashlib.sha256(study_uid.encode()).digest()[:4], "big") % 100 < percent


def with_dose_check(
    study: Any, events: Sequence[Any], make: Callable[..., Any], percent: int = PERCENT
) -> list[Any]:
    """`events` with a dose-check alert and notification on the highest-CTDIvol one when the study is selected;
    `make`: rdsr.DoseCheck (handed in, so this module imports nothing of the simulation)."""
    events = list(events)
    if getattr(study, "manufacturer", UNTOUCHED_MANUFACTURER) == UNTOUCHED_MANUFACTURER:
        return events
    if not selected(study.study_instance_uid, percent):
        return events
    scored = [(e.ctdivol_mgy, i) for i, e in enumerate(events) if e.ctdivol_mgy and e.dose_check is None]
    if not scored:
        return events
    ctdivol, i = max(scored)
    check = make(
        dlp_alert_value_configured=False,
        ctdivol_alert_value_configured=True,
        ctdivol_alert_value=float(max(1, math.floor(ctdivol * 0.8))),
        accumulated_ctdivol_forward_estimate=ctdivol,
        alert_reason_for_proceeding=REASON,
        alert_person_name=PERSON,
        ctdivol_notification_value_configured=True,
        ctdivol_notification_value=float(max(1, math.floor(ctdivol * 0.6))),
        ctdivol_forward_estimate=ctdivol,
        notification_reason_for_proceeding=REASON,
    )
    events[i] = dataclasses.replace(events[i], dose_check=check)
    return events
