"""The answers of the pages' API: rows as JSON, or exported as CSV (`format=csv`; also the audit trail's CSV) or
XLSX (`format=xlsx`, web/xlsx.py). A leaf module, below the stages and the pages that use it."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from psycopg2 import sql

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


# ----- the same CSV written by PostgreSQL (issue 19: the CT event export spent two thirds of its time building
# dicts and writing them cell by cell in Python). `sql_csv` runs a query inside `COPY (...) TO STDOUT (FORMAT
# csv)` with each value turned into the text `to_csv` writes for it, so the bytes are the same: Python's text of
# each value (`str(5.0)` is `5.0` where PostgreSQL writes `5`; `True`/`False`; ISO dates), the formula guard of
# `csv_text`, an empty text as an empty field, and CRLF line ends. COPY quotes a field holding the delimiter, `"`,
# CR or LF, as csv.writer does. A column of another type (arrays, numeric, real, timestamps, json) is not
# handled, nor a line break inside a value (its CRLF could not be told from a line end): the caller then writes
# the rows with `to_csv`.
_TEXT_OIDS = frozenset({25, 1043, 19})  # text, varchar, name
_INT_OIDS = frozenset({20, 21, 23})  # bigint, smallint, integer
_FLOAT8, _BOOL, _DATE = 701, 16, 1082


def _text_cell(c: sql.Composable) -> sql.Composable:
    """csv_text in SQL; '' as NULL (COPY writes an empty string as `""`, csv.writer as nothing)."""
    return sql.SQL(
        """CASE WHEN {c} = '' THEN NULL"""
        """ WHEN left({c}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r') THEN '''' || {c} ELSE {c} END"""
    ).format(c=c)


def _float_cell(t: sql.Composable) -> sql.Composable:
    """`t`: the double's text as PostgreSQL writes it (shortest exact digits, extra_float_digits = 1), made
    Python's `repr`: `.0` after a whole number, `nan`/`inf`; PostgreSQL writes an exponent from 1e15, Python
    from 1e16, so `1.5e+15` is written out in full (`1500000000000000.0`)."""
    d = sql.SQL("replace(split_part(ltrim({t}, '-'), 'e', 1), '.', '')").format(t=t)
    return sql.SQL(
        "CASE WHEN right({t}, 4) = 'e+15' THEN CASE WHEN left({t}, 1) = '-' THEN '-' ELSE '' END"
        " || CASE WHEN length({d}) <= 16 THEN rpad({d}, 16, '0') || '.0'"
        " ELSE left({d}, 16) || '.' || substr({d}, 17) END"
        " WHEN strpos({t}, '.') > 0 OR strpos({t}, 'e') > 0 THEN {t}"
        " WHEN {t} = 'NaN' THEN 'nan' WHEN {t} = 'Infinity' THEN 'inf' WHEN {t} = '-Infinity' THEN '-inf'"
        " ELSE {t} || '.0' END"
    ).format(t=t, d=d)


def _cell(
    column: sql.Composable, alias: sql.Composable, oid: int
) -> tuple[sql.Composable, sql.Composable] | None:
    """(the inner select item, the cell's expression over it) for a column of type `oid`; None: not handled."""
    if oid in _TEXT_OIDS:
        return sql.SQL("{} AS {}").format(column, alias), _text_cell(alias)
    if oid == _FLOAT8:
        return sql.SQL("{}::text AS {}").format(column, alias), _float_cell(alias)
    if oid in _INT_OIDS or oid == _DATE:
        return sql.SQL("{}::text AS {}").format(column, alias), alias
    if oid == _BOOL:
        cell = sql.SQL("CASE WHEN {c} THEN 'True' WHEN NOT {c} THEN 'False' END").format(c=alias)
        return sql.SQL("{} AS {}").format(column, alias), cell
    return None


def sql_csv(conn, query: sql.Composable, params: Sequence[Any] = ()) -> bytes | None:
    """The rows of `query` as `answer` sends `to_csv`'s text (UTF-8 with a BOM; header: the result's column
    names), written by PostgreSQL; None when a column's type or a line break inside a value is not handled here
    (then use `to_csv`)."""
    if conn.encoding not in ("UTF8", "UNICODE"):
        return None  # COPY writes the client's encoding; the export is UTF-8
    with conn.cursor() as cur:
        cur.execute("SET LOCAL jit = off")
        cur.execute("SET LOCAL extra_float_digits = 1")  # shortest exact digits, as Python's repr
        cur.execute("SET LOCAL DateStyle = 'ISO, MDY'")  # 2024-01-31, as str(date)
        cur.execute(sql.SQL("SELECT * FROM ({}) q LIMIT 0").format(query), params)
        names = [c.name for c in cur.description]
        parts = [_cell(sql.Identifier("q", c.name), sql.Identifier(f"c{i}"), c.type_code)
                 for i, c in enumerate(cur.description)]  # fmt: skip
        if any(p is None for p in parts):
            conn.rollback()
            return None
        # OFFSET 0: each value's text is made once (a cell's expression names it several times)
        select = sql.SQL("SELECT {cells} FROM (SELECT {inner} FROM ({query}) q OFFSET 0) x").format(
            cells=sql.SQL(", ").join(
                sql.SQL("{} AS {}").format(p[1], sql.Identifier(n)) for p, n in zip(parts, names, strict=True)
            ),
            inner=sql.SQL(", ").join(p[0] for p in parts),
            query=query,
        )
        out = io.BytesIO()
        out.write("\ufeff".encode())
        # COPY takes no bound parameters: the values go in as literals quoted by psycopg2 (mogrify)
        copy = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(
            sql.SQL(cur.mogrify(select, params).decode())
        )
        cur.copy_expert(copy, out)
        n = cur.rowcount
    conn.rollback()  # read-only: end the transaction
    body = out.getvalue()
    if n <= 0:
        return to_csv([]).encode("utf-8-sig") if n == 0 else None  # no rows: no header either
    if body.count(b"\n") != n + 1:
        return None  # a line break inside a value
    head = io.StringIO()
    csv.writer(head, lineterminator="\r\n").writerow(names)
    first = body.index(b"\n") + 1
    return head.getvalue().encode("utf-8-sig") + body[first:].replace(b"\n", b"\r\n")


def csv_answer(body: bytes, f: dict[str, Any], filename: str) -> Response:
    """A CSV body (`sql_csv`) downloaded as `filename` with the filters (export_filename) .csv, as `answer`."""
    resp = Response(200, body, "text/csv; charset=utf-8")
    resp.headers["Content-Disposition"] = f'attachment; filename="{export_filename(filename, f)}.csv"'
    return resp


# The filters an export's file name carries, in this order (`ct-events_2024-01-01_2024-12-31_chest.csv`), so two
# exports of different filters never share a name.
FILENAME_FILTERS = (
    "from", "to", "protocol", "description", "station", "manufacturer", "model", "scanner", "modality", "agent",
    "standard_name", "sex", "age_min", "age_max", "weight_min", "weight_max",
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
