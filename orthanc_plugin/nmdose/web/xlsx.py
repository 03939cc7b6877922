"""XLSX export of API rows: one sheet per protocol (or agent), plus a summary sheet (openpyxl, write-only).

Sheet names follow Excel's rules (at most 31 characters, none of ``[ ] : * ? / \\``, not empty, no leading or
trailing apostrophe, unique without regard to case, not "History"). Every text cell is written as text, never as a
formula: a StudyDescription "=HYPERLINK(...)" from the PACS stays a string.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font

CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SUMMARY = "Summary"
MAX_SHEET_NAME = 31
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\\x00-\x1f]")
_RESERVED = ("History",)  # Excel refuses it


def sheet_names(keys: Iterable[str | None], reserved: Sequence[str] = (SUMMARY,)) -> dict[str | None, str]:
    """A valid, unique sheet name for each distinct key, in order of first appearance."""
    used = {r.lower() for r in (*reserved, *_RESERVED)}
    out: dict[str | None, str] = {}
    for key in keys:
        if key in out:
            continue
        base = _BAD_SHEET_CHARS.sub("_", key or "").strip().strip("'").strip() or "(none)"
        base = base[:MAX_SHEET_NAME].rstrip("'")
        name, n = base, 2
        while name.lower() in used:
            suffix = f" ({n})"
            name = base[: MAX_SHEET_NAME - len(suffix)].rstrip("'") + suffix
            n += 1
        used.add(name.lower())
        out[key] = name
    return out


def _zone(at: dt.datetime) -> str:
    """`KST (UTC+09:00)`: the zone's abbreviation and offset (the offset alone when the zone has no name)."""
    offset = at.strftime("%z")
    offset = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    name = at.tzname() or ""
    return f"{name} ({offset})" if name and not name.startswith(("+", "-", "UTC")) else offset


def _cell(ws, value: Any, *, bold: bool = False) -> Any:
    """The value to append: plain values as they are, a WriteOnlyCell where the type or style must be set."""
    if isinstance(value, list):
        value = "; ".join("" if v is None else str(v) for v in value)
    elif isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.isoformat()  # Excel has no time zones: keep the exact text
    elif isinstance(value, dt.time):
        value = value.isoformat()
    formula_like = False
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
        formula_like = value.startswith("=")
    if not (bold or formula_like):
        return value
    cell = WriteOnlyCell(ws, value=value)
    if formula_like:
        cell.data_type = "s"  # text, never a formula from PACS data
    if bold:
        cell.font = Font(bold=True)
    return cell


def _table(ws, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    ws.append([_cell(ws, c, bold=True) for c in columns])
    for row in rows:
        ws.append([_cell(ws, row.get(c)) for c in columns])


def workbook(
    rows: Sequence[dict[str, Any]],
    *,
    title: str,
    parameters: dict[str, Any],
    group_by: str | None = None,
    summary: Sequence[dict[str, Any]] = (),
    summary_title: str = "",
) -> bytes:
    """The rows as an XLSX file: a "Summary" sheet (title, parameters, sheets and their row counts, then the
    `summary` rows), then one sheet per distinct `group_by` value (or one "Data" sheet)."""
    columns = list(rows[0].keys()) if rows else []
    groups: dict[str | None, list[dict[str, Any]]] = {}
    if group_by:
        for row in rows:
            groups.setdefault(row.get(group_by), []).append(row)
    else:
        groups["Data"] = list(rows)
    names = sheet_names(groups)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(SUMMARY)
    ws.append([_cell(ws, title, bold=True)])
    now = site_now()  # the site's time zone (KST in Korea), named
    ws.append([_cell(ws, "exported"), _cell(ws, now.strftime("%Y-%m-%d %H:%M:%S ") + _zone(now))])
    ws.append([_cell(ws, "rows"), _cell(ws, len(rows))])
    for key, value in parameters.items():
        ws.append([_cell(ws, f"parameter {key}"), _cell(ws, str(value))])
    ws.append([])
    ws.append([_cell(ws, c, bold=True) for c in ("sheet", group_by or "data", "rows")])
    for key, members in groups.items():
        ws.append([_cell(ws, names[key]), _cell(ws, key), _cell(ws, len(members))])
    if summary:
        ws.append([])
        ws.append([_cell(ws, summary_title, bold=True)])
        _table(ws, summary, list(summary[0].keys()))
    for key, members in groups.items():
        sheet = wb.create_sheet(names[key])
        _table(sheet, members, columns)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def site_now() -> dt.datetime:
    """Now in the site's time zone: the configured one (the `TZ` environment, as docker-compose.yml sets it,
    Asia/Seoul by default), else the machine's local zone."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return dt.datetime.now(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return dt.datetime.now().astimezone()


def stamp(at: dt.datetime | None = None) -> str:
    """`2026-12-05 20:31:07 KST (UTC+09:00)`: a time (now) in the site's zone, named (site_now)."""
    at = at or site_now()
    return at.strftime("%Y-%m-%d %H:%M:%S ") + _zone(at)


def sheets_workbook(
    sheets: dict[str, Sequence[dict[str, Any]]], *, title: str, parameters: dict[str, Any]
) -> bytes:
    """An XLSX file of several tables: a "Summary" sheet (title, generation time, parameters, each sheet's row
    count), then one sheet per entry of `sheets` (its key the sheet's name, made valid), columns from its rows."""
    names = sheet_names(sheets)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(SUMMARY)
    ws.append([_cell(ws, title, bold=True)])
    ws.append([_cell(ws, "generated"), _cell(ws, stamp())])
    for key, value in parameters.items():
        ws.append([_cell(ws, f"parameter {key}"), _cell(ws, str(value))])
    ws.append([])
    ws.append([_cell(ws, c, bold=True) for c in ("sheet", "rows")])
    for key, members in sheets.items():
        ws.append([_cell(ws, names[key]), _cell(ws, len(members))])
    for key, members in sheets.items():
        sheet = wb.create_sheet(names[key])
        columns = list(members[0].keys()) if members else []
        _table(sheet, members, columns)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
