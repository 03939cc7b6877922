"""``merge_study``: the parsed objects of one study to one study record (pure; the ingest stores its result).

Rules (issue 6 item 4):
- CT events come from the best CT source present: X-Ray RDSR, else Enhanced/Comprehensive SR, else a dose
  screen; never from two sources (no duplicates).
- Within that source, events are merged by Irradiation Event UID across cumulative and "continued" reports:
  each event once, none lost. Of two copies, the one with more values wins.
- Administrations from a Radiopharmaceutical Radiation Dose SR win over PET/NM image headers; a header
  administration with the same nuclide is folded into the SR's, keeping the header's injection time and the
  difference (``header_start_datetime``, ``injection_time_difference_s`` = header minus SR). Header
  administrations repeated on every image of a series count once.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

CT_SOURCE_PRIORITY = ("ct_rdsr", "ct_esr", "ct_dose_screen")
HEADER_KINDS = ("pet_image", "nm_image")


def _filled(d: dict[str, Any]) -> int:
    return sum(1 for v in d.values() if v not in (None, [], {}))


def _parse_iso(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    try:
        return _dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def merge_study(parsed_objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Merge ``parse_file`` results of one study (objects of other studies are reported, not merged)."""
    # in a fixed order, not arrival order: the same objects give the same record whatever order they came in
    # (e.g. which of two PET images with the same administration is the one used)
    objects = sorted(
        (o for o in parsed_objects if o.get("status") == "ok"),
        key=lambda o: (o.get("sop_instance_uid") or "", str(o.get("file") or "")),
    )
    warnings: list[str] = []
    study_uids = {o.get("study_instance_uid") for o in objects if o.get("study_instance_uid")}
    study_uid = None
    if study_uids:
        study_uid = sorted(
            study_uids, key=lambda u: -sum(1 for o in objects if o.get("study_instance_uid") == u)
        )[0]
        if len(study_uids) > 1:
            warnings.append(f"objects of {len(study_uids)} studies given; merged only {study_uid}")
            objects = [o for o in objects if o.get("study_instance_uid") in (study_uid, None)]
    sources = [
        {"file": o["file"], "sop_instance_uid": o.get("sop_instance_uid"), "kind": o["kind"], "used_for": []}
        for o in objects
    ]
    by_sop = {}
    for source, obj in zip(sources, objects, strict=True):
        key = obj.get("sop_instance_uid") or obj["file"]
        if key in by_sop:  # the same instance twice (re-sent): read once
            source["used_for"].append("duplicate instance, ignored")
            continue
        by_sop[key] = (source, obj)
    unique = list(by_sop.values())

    ct = _merge_ct(unique, warnings)
    radiopharmaceutical = _merge_radiopharmaceutical(unique, warnings)
    first = unique[0][1] if unique else {}
    patient = {"age_years": None, "sex": None, "weight_kg": None, "height_m": None}
    # image headers first (weight at the time of the scan), then the dose reports
    for _source, obj in sorted(unique, key=lambda so: so[1]["kind"] not in HEADER_KINDS):
        for key in patient:
            if patient[key] is None and obj["patient"].get(key) is not None:
                patient[key] = obj["patient"][key]
    protocols = []
    seen = set()
    for _source, obj in unique:
        entry = {"series_instance_uid": obj.get("series_instance_uid"), "modality": obj.get("modality"),
                 **obj["protocol"]}  # fmt: skip
        marker = tuple(sorted((k, str(v)) for k, v in entry.items()))
        if marker not in seen:
            seen.add(marker)
            protocols.append(entry)
    return {
        "study_instance_uid": study_uid,
        "study_date": first.get("study_date"),
        "study_description": first.get("study_description"),
        "accession_number": first.get("accession_number"),
        "patient": patient,
        "protocols": protocols,
        "ct": ct,
        "radiopharmaceutical": radiopharmaceutical,
        "sources": sources,
        "warnings": warnings,
    }


def _merge_ct(unique: list, warnings: list[str]) -> dict[str, Any]:
    chosen_kind = next((k for k in CT_SOURCE_PRIORITY if any(o["kind"] == k for _s, o in unique)), None)
    ct: dict[str, Any] = {"source_kind": chosen_kind, "total_dlp_mgycm": None, "total_events": 0, "events": [],
                          "reported_total_dlp_mgycm": None}  # fmt: skip
    if chosen_kind is None:
        return ct
    for source, obj in unique:
        if obj["kind"] in CT_SOURCE_PRIORITY and obj["kind"] != chosen_kind:
            source["used_for"].append(f"ct: not used, {chosen_kind} preferred")
    chosen = [(s, o) for s, o in unique if o["kind"] == chosen_kind]
    events: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    reported_totals = []
    for source, obj in chosen:
        source["used_for"].append("ct")
        reported_totals.append(obj["ct"].get("total_dlp_mgycm"))
        for index, event in enumerate(obj["ct"]["events"]):
            uid = event.get("irradiation_event_uid")
            key = uid or f"{obj.get('sop_instance_uid') or obj['file']}#{index}"
            if key in events:
                if _filled(event) > _filled(events[key]):
                    events[key] = event
                continue
            events[key] = event
            order.append(key)
    merged = [events[k] for k in order]
    ct["events"] = merged
    ct["total_events"] = len(merged)
    dlps = [e["dlp_mgycm"] for e in merged if e.get("dlp_mgycm") is not None]
    if chosen_kind == "ct_dose_screen":
        ct["total_dlp_mgycm"] = max((t for t in reported_totals if t is not None), default=None)
    elif dlps:
        ct["total_dlp_mgycm"] = round(sum(dlps), 6)
    totals = [t for t in reported_totals if t is not None]
    if totals:
        ct["reported_total_dlp_mgycm"] = max(totals)
        computed = ct["total_dlp_mgycm"]
        if (
            computed is not None
            and len(chosen) == 1
            and abs(totals[0] - computed) > max(1.0, 0.01 * totals[0])
        ):
            warnings.append(
                f"CT Dose Length Product Total {totals[0]:g} mGy.cm differs from the sum of the events' DLP "
                f"{computed:g} mGy.cm"
            )
    return ct


def _merge_radiopharmaceutical(unique: list, warnings: list[str]) -> list[dict[str, Any]]:
    from_sr: list[dict[str, Any]] = []
    seen_uids: set[str] = set()
    for source, obj in unique:
        if obj["kind"] != "radiopharmaceutical_rdsr":
            continue
        source["used_for"].append("radiopharmaceutical")
        for adm in obj["radiopharmaceutical"]:
            uid = adm.get("administration_event_uid")
            if uid and uid in seen_uids:
                continue
            if uid:
                seen_uids.add(uid)
            from_sr.append({**adm, "source": "rrdsr", "header_start_datetime": None,
                            "injection_time_difference_s": None, "header_activity_mbq": None,
                            "header_half_life_s": None})  # fmt: skip
    from_headers: dict[tuple, dict[str, Any]] = {}
    for source, obj in unique:
        if obj["kind"] not in HEADER_KINDS:
            continue
        for adm in obj["radiopharmaceutical"]:
            activity = adm.get("activity_mbq")
            key = (adm.get("radionuclide_code") or adm.get("radionuclide"), adm.get("agent_code") or adm.get("agent"),
                   None if activity is None else round(activity, 3), adm.get("start_datetime"))  # fmt: skip
            if key not in from_headers:
                from_headers[key] = {**adm, "source": obj["kind"]}
                source["used_for"].append("radiopharmaceutical")
    merged = list(from_sr)
    for header in from_headers.values():
        match = _matching_sr(header, from_sr)
        if match is None:
            merged.append({**header, "header_start_datetime": None, "injection_time_difference_s": None,
                           "header_activity_mbq": None, "header_half_life_s": None})  # fmt: skip
            continue
        match["header_start_datetime"] = header.get("start_datetime")
        match["header_activity_mbq"] = header.get("activity_mbq")
        match["header_half_life_s"] = header.get("half_life_s")  # the header's wins for decay correction
        sr_time, header_time = (
            _parse_iso(match.get("start_datetime")),
            _parse_iso(header.get("start_datetime")),
        )
        if sr_time is not None and header_time is not None:
            try:
                difference = (header_time - sr_time).total_seconds()
            except TypeError:  # one has a time zone, the other not: compare wall-clock times
                difference = (header_time.replace(tzinfo=None) - sr_time.replace(tzinfo=None)).total_seconds()
            match["injection_time_difference_s"] = difference
            if difference:
                warnings.append(
                    f"injection time differs: header {header['start_datetime']} vs RRDSR {match['start_datetime']} "
                    f"({difference:+g} s); the RRDSR's is used"
                )
        elif sr_time is None and header_time is not None:
            match["start_datetime"] = header.get("start_datetime")
            match["start_datetime_source"] = header.get("start_datetime_source")
        for key in ("agent", "agent_code", "half_life_s", "route", "route_code", "positron_fraction"):
            if match.get(key) is None and header.get(key) is not None:
                match[key] = header[key]
    return merged


def _matching_sr(header: dict[str, Any], from_sr: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The RRDSR administration of the same nuclide (closest in time when several)."""
    nuclide = header.get("radionuclide_code") or header.get("radionuclide")
    candidates = [a for a in from_sr if nuclide is None or (a.get("radionuclide_code") or a.get("radionuclide"))
                  in (nuclide, None)]  # fmt: skip
    if not candidates:
        return None
    header_time = _parse_iso(header.get("start_datetime"))
    if header_time is None or len(candidates) == 1:
        return candidates[0]

    def distance(adm: dict[str, Any]) -> float:
        t = _parse_iso(adm.get("start_datetime"))
        if t is None:
            return float("inf")
        return abs((t.replace(tzinfo=None) - header_time.replace(tzinfo=None)).total_seconds())

    return min(candidates, key=distance)
