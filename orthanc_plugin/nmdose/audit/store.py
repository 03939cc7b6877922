"""SQL of the audit trail: insert rows (one statement per batch), query them with the privacy officer's filters,
and the retention purge (the SECURITY DEFINER function `audit.purge` of sql/008_audit.sql)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import psycopg2.extras

from nmdose.audit.event import AuditEvent
from nmdose.web.export import to_csv as csv_table

COLUMNS = (
    "at", "source", "actor_subject", "actor_username", "actor_roles", "client_address", "peer_address",
    "forwarded_for", "action", "method", "path", "permission", "params", "study_uids", "study_uids_total",
    "rows_returned", "format", "status", "outcome", "detail",
)  # fmt: skip
_INSERT = f"INSERT INTO audit.event ({', '.join(COLUMNS)}) VALUES %s"
_TEMPLATE = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
MAX_LIMIT = 10_000


NUL_MARK = "\ufffd"  # a NUL character as recorded (PostgreSQL's text and jsonb cannot hold one)


def _no_nul(value: Any) -> Any:
    """`value` with each NUL character of its texts (dict keys, list items too) made NUL_MARK: a request with
    `?who=%00` is recorded as sent, instead of failing its whole batch again and again (the writer retries)."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_MARK) if "\x00" in value else value
    if isinstance(value, dict):
        return {_no_nul(k): _no_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nul(v) for v in value]
    return value


def _values(e: AuditEvent) -> tuple:
    return tuple(_no_nul(v) if isinstance(v, str | list) else v for v in (
        e.at, e.source, e.actor_subject, e.actor_username, list(e.actor_roles), e.client_address,
        e.peer_address, e.forwarded_for, e.action[:500], e.method, (e.path or None) and e.path[:2000],
        e.permission, psycopg2.extras.Json(_no_nul(e.params)), list(e.study_uids), e.study_uids_total,
        e.rows_returned, e.format, e.status, e.outcome, psycopg2.extras.Json(_no_nul(e.detail)),
    ))  # fmt: skip


def insert(conn, events: Sequence[AuditEvent]) -> None:
    """Insert the rows and commit (one INSERT statement for the batch)."""
    if not events:
        return
    with conn.cursor() as cur:
        psycopg2.extras.execute_values(cur, _INSERT, [_values(e) for e in events], template=_TEMPLATE)
    conn.commit()


def purge(conn, retention_days: int, *, source: str = "cli", by: str | None = None) -> int:
    """Remove the rows older than `retention_days` (at least 730); the purge records itself. Returns how many
    rows were removed."""
    with conn.cursor() as cur:
        cur.execute("SELECT audit.purge(%s, %s, %s)", (retention_days, source, by))
        (removed,) = cur.fetchone()
    conn.commit()
    return int(removed)


# ----- the privacy officer's query


class FilterError(ValueError):
    pass


def _time(value: str, name: str, *, end: bool) -> dt.datetime | dt.date:
    v = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        day = dt.date.fromisoformat(v)
        return day + dt.timedelta(days=1) if end else day  # `to` a date: that whole day
    try:
        return dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(
            f"parameter {name!r}: expected a date YYYY-MM-DD or an ISO 8601 time, got {value!r}"
        ) from None


FILTERS = ("user", "study", "patient", "route", "source", "outcome", "from", "to", "limit", "page", "format")


def parse_filters(query: dict[str, str]) -> dict[str, Any]:
    unknown = sorted(set(query) - set(FILTERS))
    if unknown:
        raise FilterError(f"unknown parameter {unknown[0]!r} (expected {', '.join(FILTERS)})")
    f: dict[str, Any] = {k: v.strip() for k, v in query.items() if v is not None and v.strip() != ""}
    for name in ("limit", "page"):
        if name in f:
            try:
                f[name] = int(f[name])
            except ValueError:
                raise FilterError(f"parameter {name!r}: expected an integer, got {f[name]!r}") from None
    f.setdefault("limit", 100)
    f.setdefault("page", 1)
    if not 1 <= f["limit"] <= MAX_LIMIT:
        raise FilterError(f"parameter 'limit': expected 1..{MAX_LIMIT}, got {f['limit']}")
    if f["page"] < 1:
        raise FilterError(f"parameter 'page': expected 1 or more, got {f['page']}")
    if "from" in f:
        f["from"] = _time(f["from"], "from", end=False)
    if "to" in f:
        f["to"] = _time(f["to"], "to", end=True)
    if f.get("source") not in (None, "web", "cli", "plugin"):
        raise FilterError(f"parameter 'source': expected web, cli or plugin, got {f['source']!r}")
    if f.get("outcome") not in (None, "success", "failure", "denied"):
        raise FilterError(f"parameter 'outcome': expected success, failure or denied, got {f['outcome']!r}")
    if f.get("format", "json") not in ("json", "csv"):
        raise FilterError(f"parameter 'format': expected json or csv, got {f['format']!r}")
    return f


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def query(conn, f: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Rows matching the filters, newest first, one page; and whether there are more pages.

    user: username or token subject (exact); study: a StudyInstanceUID among the row's; patient: a PatientID,
    matched through the census (rpacs.study) to its studies; route: part of the route or action; from/to: time."""
    where, args = [], []
    if "user" in f:
        where.append("(e.actor_username = %s OR e.actor_subject = %s)")
        args += [f["user"], f["user"]]
    if "study" in f:
        where.append("e.study_uids @> ARRAY[%s]::text[]")
        args.append(f["study"])
    if "patient" in f:
        where.append(
            "e.study_uids && coalesce((SELECT array_agg(s.study_uid) FROM rpacs.study s WHERE s.patient_id = %s),"
            " '{}'::text[])"
        )
        args.append(f["patient"])
    if "route" in f:
        where.append("(e.action ILIKE %s OR e.path ILIKE %s)")
        args += [_like(f["route"]), _like(f["route"])]
    for name in ("source", "outcome"):
        if name in f:
            where.append(f"e.{name} = %s")
            args.append(f[name])
    if "from" in f:
        where.append("e.at >= %s")
        args.append(f["from"])
    if "to" in f:
        where.append("e.at < %s")
        args.append(f["to"])
    sql = "SELECT e.id, " + ", ".join(f"e.{c}" for c in COLUMNS) + " FROM audit.event e"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY e.at DESC, e.id DESC LIMIT %s OFFSET %s"
    args += [f["limit"] + 1, (f["page"] - 1) * f["limit"]]
    with conn.cursor() as cur:
        cur.execute(sql, args)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    conn.rollback()
    more = len(rows) > f["limit"]
    rows = rows[: f["limit"]]
    for r in rows:
        r["at"] = r["at"].isoformat()
    return rows, more


CSV_COLUMNS = ("id",) + COLUMNS


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as the pages' CSV (nmdose.web.export.to_csv: lists joined with a backslash, no cell a spreadsheet
    would run as a formula); the parameters as JSON text."""
    import json

    flat = [
        {
            c: json.dumps(v, ensure_ascii=False, sort_keys=True) if isinstance(v, dict) else v
            for c in CSV_COLUMNS
            for v in (r.get(c),)
        }  # fmt: skip
        for r in rows
    ]
    return csv_table(flat, CSV_COLUMNS)
