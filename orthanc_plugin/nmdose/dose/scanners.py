"""Scanners: which device made a study (issue 16 item 2; ``dose.scanner``, sql/016_scanners.sql).

Identity rule (docs/dose.md "Scanners"), strongest first; the first that finds a stored scanner wins:

1. the Device Observer UID of the study's dose reports (TID 1004, 121012);
2. manufacturer + model + serial number (DeviceSerialNumber);
3. manufacturer + model + station name (StationName), only against a scanner whose serial number is unknown or the
   same, or when the study has none (a replacement scanner that takes over a station name has its own serial).

Manufacturer, model and station compare without case and surrounding spaces. Nothing found: a new scanner, created
under the study's strongest key (``identity_key``, unique: two ingests creating the same scanner at once make one
row). A new software version, another station name or another Device Observer UID (some scanners change it with
an upgrade) seen on a found scanner is added to its row with the first and last study date it was seen on: it
never makes a second scanner. Only a study with neither a serial number nor a Device Observer UID whose station
was renamed can start a new scanner; an administrator merges the two (``merged_into``, web/routes_scanners.py).

:func:`equipment`, :func:`identity_keys`, :func:`display_name` and :func:`updated` are pure (unit-tested);
:func:`resolve` runs inside the ingest's transaction (nmdose/dose/ingest.py) and returns the study's scanner_id.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg2.extras import Json

__all__ = ["Equipment", "display_name", "equipment", "identity_keys", "resolve", "updated"]

MAX_NAMES = (
    200  # names kept per scanner (station names, software versions): a forged stream cannot grow a row
)


def _norm(value: Any) -> str | None:
    """Text with its spaces collapsed; None when empty."""
    if value is None:
        return None
    text = " ".join(str(value).replace("\x00", "").split())
    return text[:200] or None


@dataclass(frozen=True)
class Equipment:
    """What a study's objects say about the device that made it."""

    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    station: str | None = None
    software: tuple[str, ...] = ()
    device_observer_uids: tuple[str, ...] = ()
    study_date: _dt.date | None = None


def equipment(objects: Iterable[dict[str, Any]], study: dict[str, Any]) -> Equipment:
    """The study's equipment: manufacturer, model and station as the study row has them (its first object with a
    manufacturer), the serial number of the first object that has one, every software version and Device
    Observer UID of its objects."""
    objects = list(objects)
    serial = next((s for s in (_norm(o.get("device_serial_number")) for o in objects) if s), None)
    software = tuple(dict.fromkeys(s for s in (_norm(o.get("software_versions")) for o in objects) if s))
    uids = tuple(sorted({u for u in (_norm(o.get("device_observer_uid")) for o in objects) if u}))
    date = study.get("study_date")
    if isinstance(date, str):
        try:
            date = _dt.date.fromisoformat(date)
        except ValueError:
            date = None
    return Equipment(
        _norm(study.get("manufacturer")),
        _norm(study.get("model_name")),
        serial,
        _norm(study.get("station_name")),
        software,
        uids,
        date if isinstance(date, _dt.date) else None,
    )


def _low(value: str | None) -> str:
    return (value or "").lower()


def identity_keys(eq: Equipment) -> list[str]:
    """The study's identity keys, strongest first (the first one names a new scanner); [] when the objects name
    no device at all. The serial and station keys are those sql/016_scanners.sql's backfill computes."""
    keys = [f"uid:{u}" for u in eq.device_observer_uids]
    if eq.manufacturer and eq.model and eq.serial:
        keys.append(f"serial:{_low(eq.manufacturer)}|{_low(eq.model)}|{eq.serial}")
    if eq.manufacturer or eq.model or eq.station:
        keys.append(f"station:{_low(eq.manufacturer)}|{_low(eq.model)}|{_low(eq.station)}")
    return keys


def display_name(eq: Equipment) -> str:
    """The name a new scanner gets until an administrator renames it: model (station)."""
    base = eq.model or eq.manufacturer
    if base:
        return (base + (f" ({eq.station})" if eq.station else ""))[:200]
    return (eq.station or "scanner")[:200]


def _seen(names: dict[str, Any], name: str | None, day: str | None) -> dict[str, Any]:
    """`names` ({name: {"first": date, "last": date}}) with `name` seen on `day` (a copy when it changes)."""
    if not name:
        return names
    known = names.get(name)
    if known is None:
        if len(names) >= MAX_NAMES:
            return names
        return {**names, name: {"first": day, "last": day}}
    first, last = known.get("first"), known.get("last")
    if day is None or (first is not None and last is not None and first <= day <= last):
        return names
    new_first = day if first is None or day < first else first
    new_last = day if last is None or day > last else last
    return {**names, name: {"first": new_first, "last": new_last}}


def updated(row: dict[str, Any], eq: Equipment) -> dict[str, Any]:
    """The columns of a stored scanner `row` that the study's equipment changes (pure; {}: nothing to write)."""
    day = eq.study_date.isoformat() if eq.study_date else None
    changes: dict[str, Any] = {}
    stations = _seen(row.get("station_names") or {}, eq.station, day)
    if stations != (row.get("station_names") or {}):
        changes["station_names"] = stations
    software = row.get("software_versions") or {}
    for version in eq.software:
        software = _seen(software, version, day)
    if software != (row.get("software_versions") or {}):
        changes["software_versions"] = software
    uids = list(row.get("device_observer_uids") or [])
    new_uids = [u for u in eq.device_observer_uids if u not in uids]
    if new_uids and len(uids) < MAX_NAMES:
        changes["device_observer_uids"] = uids + new_uids
        if not row.get("device_observer_uid"):
            changes["device_observer_uid"] = new_uids[0]
    for column, value in (("device_serial_number", eq.serial), ("manufacturer", eq.manufacturer),
                          ("model_name", eq.model)):  # fmt: skip
        if value and not row.get(column):
            changes[column] = value
    if eq.study_date:
        first, last = row.get("first_study_date"), row.get("last_study_date")
        if first is None or eq.study_date < first:
            changes["first_study_date"] = eq.study_date
        if last is None or eq.study_date > last:
            changes["last_study_date"] = eq.study_date
    return changes


# ------------------------------------------------------------------------------------------------- database
COLUMNS = ("scanner_id", "station_names", "software_versions", "device_observer_uids", "device_observer_uid",
           "device_serial_number", "manufacturer", "model_name", "first_study_date", "last_study_date")  # fmt: skip
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM dose.scanner"  # our columns

FIND_BY_UIDS = _SELECT + " WHERE device_observer_uids && %s::text[] ORDER BY scanner_id LIMIT 1"
FIND_BY_SERIAL = (
    _SELECT
    + """ WHERE lower(manufacturer) = lower(%s) AND lower(model_name) = lower(%s)
                    AND device_serial_number = %s ORDER BY scanner_id LIMIT 1"""
)
FIND_BY_STATION = (
    _SELECT
    + """ WHERE lower(coalesce(manufacturer, '')) = lower(%s) AND lower(coalesce(model_name, '')) = lower(%s)
                    AND EXISTS (SELECT 1 FROM jsonb_object_keys(station_names) k WHERE lower(k) = lower(%s))
                    AND (device_serial_number IS NULL OR %s::text IS NULL OR device_serial_number = %s)
                  ORDER BY scanner_id LIMIT 1"""
)
FIND_BY_KEY = _SELECT + " WHERE identity_key = ANY(%s) ORDER BY scanner_id LIMIT 1"
CREATE = """INSERT INTO dose.scanner (identity_key, display_name, manufacturer, model_name, device_serial_number)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (identity_key) DO UPDATE SET identity_key = EXCLUDED.identity_key
            RETURNING """ + ", ".join(COLUMNS)  # fmt: skip


def _row(cur) -> dict[str, Any] | None:
    found = cur.fetchone()
    return dict(zip(COLUMNS, found, strict=True)) if found is not None else None


def find(cur, eq: Equipment) -> dict[str, Any] | None:
    """The stored scanner of this equipment by the identity rule (module docstring), or None."""
    keys = identity_keys(eq)
    if not keys:
        return None
    cur.execute(FIND_BY_KEY, (keys,))
    by_key = _row(cur)
    if eq.device_observer_uids:
        cur.execute(FIND_BY_UIDS, (list(eq.device_observer_uids),))
        found = _row(cur)
        if found is not None:
            return found
    if eq.manufacturer and eq.model and eq.serial:
        cur.execute(FIND_BY_SERIAL, (eq.manufacturer, eq.model, eq.serial))
        found = _row(cur)
        if found is not None:
            return found
    if eq.station:
        cur.execute(
            FIND_BY_STATION, (eq.manufacturer or "", eq.model or "", eq.station, eq.serial, eq.serial)
        )
        found = _row(cur)
        if found is not None:
            return found
    return by_key


def resolve(cur, objects: Iterable[dict[str, Any]], study: dict[str, Any]) -> int | None:
    """The scanner_id of a study (found, else created) with the row brought up to date; None when its objects
    name no device. Runs in the caller's transaction (the ingest's, under the study's lock)."""
    eq = equipment(objects, study)
    keys = identity_keys(eq)
    if not keys:
        return None
    row = find(cur, eq)
    if row is None:
        # Two ingests of one new scanner at once may hold different first keys (two Device Observer UIDs of one
        # serial number): creating is serialised per manufacturer and model (held to the ingest's commit), and
        # whoever waited looks again, so it finds the row the first one made instead of making a second.
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))",
            ("nmdose-scanner|" + (eq.manufacturer or "").lower() + "|" + (eq.model or "").lower(),),
        )
        row = find(cur, eq)
    if row is None:
        cur.execute(CREATE, (keys[0], display_name(eq), eq.manufacturer, eq.model, eq.serial))
        row = _row(cur)
    if updated(row, eq):  # read again under the row's lock: two ingests of the scanner must not lose a name
        cur.execute(_SELECT + " WHERE scanner_id = %s FOR UPDATE", (row["scanner_id"],))
        row = _row(cur)
        changes = updated(row, eq)
        if changes:
            values = [Json(v) if isinstance(v, dict) else v for v in changes.values()]
            assignments = ", ".join(f"{c} = %s" for c in changes)  # columns of COLUMNS, ours
            cur.execute(
                f"UPDATE dose.scanner SET {assignments}, updated_at = now() WHERE scanner_id = %s",
                (*values, row["scanner_id"]),
            )
    return row["scanner_id"]
