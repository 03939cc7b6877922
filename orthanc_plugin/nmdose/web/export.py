"""CSV export of answer rows (the pages' `format=csv`, the audit trail's CSV): a leaf module, below the stages
and the pages that use it."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

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
