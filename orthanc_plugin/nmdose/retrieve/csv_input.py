"""`nmdose retrieve csv FILE`: a list of accession numbers, patient IDs (optionally with a date range) or
StudyInstanceUIDs, its header naming the column. Each good row is resolved with a study-level C-FIND; bad rows
are reported with their line numbers and the good ones still run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from nmdose.errors import NmdoseError, PacsError
from nmdose.pacs.orthanc_http import OrthancHttp

KEY_COLUMNS = {
    "accessionnumber": "AccessionNumber",
    "accession": "AccessionNumber",
    "accession_number": "AccessionNumber",
    "patientid": "PatientID",
    "patient_id": "PatientID",
    "studyinstanceuid": "StudyInstanceUID",
    "study_uid": "StudyInstanceUID",
    "studyuid": "StudyInstanceUID",
}
DATE_COLUMNS = {
    "studydate": "date",
    "study_date": "date",
    "date": "date",
    "date_from": "from",
    "from": "from",
    "date_to": "to",
    "to": "to",
}
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
MAX_LEN = {"AccessionNumber": 16, "PatientID": 64, "StudyInstanceUID": 64}  # VR SH, LO, UI


class CsvInputError(NmdoseError):
    """The file as a whole cannot be used (unreadable, no key column)."""


@dataclass
class CsvRow:
    line: int
    key: str  # AccessionNumber | PatientID | StudyInstanceUID
    value: str
    date_range: str | None = None  # DICOM range "YYYYMMDD-YYYYMMDD"

    def query(self) -> dict[str, str]:
        q = {self.key: self.value}
        if self.date_range:
            q["StudyDate"] = self.date_range
        return q


@dataclass
class CsvProblem:
    line: int
    message: str


@dataclass
class Resolution:
    row: CsvRow
    studies: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def outcome(self) -> str:
        if self.error:
            return "error"
        if not self.studies:
            return "no match"
        return "one study" if len(self.studies) == 1 else f"{len(self.studies)} studies"


def _decode(raw: bytes, path: Path) -> str:
    for encoding in ("utf-8-sig", "cp949"):  # Korean Excel exports are CP949 (EUC-KR)
        with contextlib.suppress(UnicodeDecodeError):
            return raw.decode(encoding)
    raise CsvInputError(f"{path}: not UTF-8 or CP949 text")


def _date(value: str) -> str | None:
    """YYYYMMDD of a real calendar date given as YYYY-MM-DD or YYYYMMDD, else None."""
    m = _DATE.match(value.strip())
    if not m:
        return None
    try:
        date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None
    return f"{m[1]}{m[2]}{m[3]}"


def read_csv(path: Path) -> tuple[list[CsvRow], list[CsvProblem]]:
    """Rows to resolve and problems by line number; raises CsvInputError only if no row can be read."""
    try:
        text = _decode(Path(path).read_bytes(), path)
    except OSError as exc:
        raise CsvInputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        dialect = csv.Sniffer().sniff(text.split("\n", 1)[0] or ",", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    header = next(reader, None)
    if not header:
        raise CsvInputError(f"{path}: empty file (expected a header naming the column)")
    names = [h.strip().lower().replace(" ", "") for h in header]
    keys = [(i, KEY_COLUMNS[n]) for i, n in enumerate(names) if n in KEY_COLUMNS]
    if len(keys) != 1:
        found = ", ".join(header) or "nothing"
        raise CsvInputError(
            f"{path}:1: expected a header with exactly one of AccessionNumber, PatientID, StudyInstanceUID; "
            f"got {found}"
        )
    key_index, key = keys[0]
    dates = {DATE_COLUMNS[n]: i for i, n in enumerate(names) if n in DATE_COLUMNS}
    rows: list[CsvRow] = []
    problems: list[CsvProblem] = []
    seen: dict[tuple[str, str | None], int] = {}
    for line, record in enumerate(reader, start=2):
        if not record or all(not c.strip() for c in record):
            continue
        if len(record) <= key_index or not record[key_index].strip():
            problems.append(CsvProblem(line, f"empty {key}"))
            continue
        value = record[key_index].strip()
        if len(value) > MAX_LEN[key]:
            problems.append(CsvProblem(line, f"{key} {value!r} is longer than {MAX_LEN[key]} characters"))
            continue
        if key == "StudyInstanceUID" and not _UID.match(value):
            problems.append(CsvProblem(line, f"{value!r} is not a valid UID (digits and dots)"))
            continue
        if "*" in value or "?" in value or "\\" in value:
            problems.append(CsvProblem(line, f"{value!r}: wildcards and backslashes are not allowed"))
            continue
        date_range, bad = None, None
        cell = {k: (record[i].strip() if i < len(record) else "") for k, i in dates.items()}
        if cell.get("date"):
            d = _date(cell["date"])
            date_range, bad = (f"{d}-{d}", None) if d else (None, cell["date"])
        elif cell.get("from") or cell.get("to"):
            lo = _date(cell["from"]) if cell.get("from") else ""
            hi = _date(cell["to"]) if cell.get("to") else ""
            if lo is None or hi is None:
                bad = cell.get("from") if lo is None else cell.get("to")
            elif lo and hi and lo > hi:
                bad = f"{cell['from']} after {cell['to']}"
            else:
                date_range = f"{lo}-{hi}"
        if bad is not None:
            problems.append(CsvProblem(line, f"bad date {bad!r} (expected YYYY-MM-DD or YYYYMMDD)"))
            continue
        if (value, date_range) in seen:
            problems.append(CsvProblem(line, f"duplicate of line {seen[(value, date_range)]}"))
            continue
        seen[(value, date_range)] = line
        rows.append(CsvRow(line, key, value, date_range))
    if not rows and not problems:
        raise CsvInputError(f"{path}: no data rows below the header")
    return rows, problems


def resolve(rows: list[CsvRow], rest: OrthancHttp, source: str) -> list[Resolution]:
    """Study-level C-FIND through the research PACS for each row."""
    out: list[Resolution] = []
    wanted = {
        "StudyInstanceUID": "",
        "StudyDate": "",
        "StudyDescription": "",
        "ModalitiesInStudy": "",
        "AccessionNumber": "",
        "PatientID": "",
        "NumberOfStudyRelatedInstances": "",
    }
    for row in rows:
        try:
            answers = rest.cfind(source, "Study", wanted | row.query())
            out.append(Resolution(row, [a for a in answers if a.get("StudyInstanceUID")]))
        except PacsError as exc:
            out.append(Resolution(row, error=str(exc)))
    return out
