"""The answers of the pages' API: rows as JSON, or exported as CSV (`format=csv`; also the audit trail's CSV) or
XLSX (`format=xlsx`, web/xlsx.py). A leaf module, below the stages and the pages that use it."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from nmdose.web.router import Response

# A text cell starting with one of these is a formula to Excel and LibreOffice ("=HYPERLINK(...)" in a
# StudyDescription from the PACS): such cells get a leading apostrophe (OWASP, CSV injection), which the
# spreadsheet shows as text. Numbers and dates are never text here, so a negative number stays a number.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """`value` as a CSV text cell that a spreadsheet never evaluates."""
    return "'" + value if value.startswith(FORMULA_START) else value


def to_csv(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as CSV (header line, then one line per row), lists joined with backslash as in DICOM; text cells
    that a spreadsheet would run as a formula are prefixed with an apostrophe (`csv_text`)."""
    columns = list(columns or (rows[0].keys() if rows else []))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            if isinstance(v, list):
                v = "\\".join(map(str, v))
            cells.append("" if v is None else csv_text(v) if isinstance(v, str) else v)
        w.writerow(cells)
    return buf.getvalue()


# The filters an export's file name carries, in this order (`ct-events_2024-01-01_2024-12-31_chest.csv`), so two
# exports of different filters never share a name.
FILENAME_FILTERS = (
    "from", "to", "protocol", "description", "station", "manufacturer", "model", "scanner", "modality", "agent", "sex",
    "age_min", "age_max", "weight_min", "weight_max",
)  # fmt: skip
_NOT_IN_NAME = re.compile(r"[^a-z0-9.]+")


def _name_part(value: Any) -> str:
    """A value as a safe file-name part: ASCII letters, digits, dots and dashes (`¹⁸F-FDG` → `18f-fdg`)."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode().lower()
    return _NOT_IN_NAME.sub("-", text).strip("-.")[:40].strip("-.")


def export_filename(base: str, f: dict[str, Any]) -> str:
    """`base` and the filters of `f` that are set (FILENAME_FILTERS): the dates as they are (`from-…` / `to-…`
    when only one is set), the text filters sanitised (a value with nothing left, e.g. all Korean, as `x`), the
    others as `name-value`; at most 150 characters."""
    parts = [base]
    if "from" in f and "to" in f:
        parts += [str(f["from"]), str(f["to"])]
    elif "from" in f or "to" in f:
        key = "from" if "from" in f else "to"
        parts.append(f"{key}-{f[key]}")
    for key in FILENAME_FILTERS[2:]:
        if key not in f:
            continue
        part = _name_part(f[key]) or "x"
        parts.append(part if key in ("protocol", "description", "station", "manufacturer", "model", "agent")
                     else f"{key}-{part}")  # fmt: skip
    return "_".join(parts)[:150].rstrip("_-.")


def answer(
    rows: list[dict[str, Any]],
    f: dict[str, Any],
    filename: str,
    *,
    group_by: str | None = None,
    summary: Callable[[], Iterable[dict[str, Any]]] | None = None,
    summary_title: str = "",
    extra: dict[str, Any] | None = None,
) -> Response:
    """JSON `{"rows", "count", **extra}`, or the same rows as CSV or XLSX (`format` of the validated parameters
    `f`), downloaded as `filename` with the filters (export_filename) .csv / .xlsx. For XLSX, `group_by` names the column whose values get a sheet
    each, `summary()` gives the rows of the summary sheet and the other parameters are listed on it."""
    if f.get("format") in ("csv", "xlsx"):
        filename = export_filename(filename, f)
    if f.get("format") == "csv":
        resp = Response(200, to_csv(rows).encode("utf-8-sig"), "text/csv; charset=utf-8")
        resp.headers["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return resp
    if f.get("format") == "xlsx":
        from nmdose.web import xlsx  # openpyxl: loaded by the first export, not by every user of to_csv

        body = xlsx.workbook(
            rows,
            title=f"nmdose {filename}",
            parameters={k: v for k, v in f.items() if k != "format"},
            group_by=group_by,
            summary=summary() if summary else (),
            summary_title=summary_title,
        )
        resp = Response(200, body, xlsx.CONTENT_TYPE)
        resp.headers["Content-Disposition"] = f'attachment; filename="{filename}.xlsx"'
        return resp
    return Response.json({"rows": rows, "count": len(rows), **(extra or {})})
