"""The project name rule and the lists of studies a project is given (a CSV of accession numbers or UIDs).

A project name is lower-case letters, digits, `-` and `_`, 2 to 63 characters, starting with a letter or digit:
it appears in realm role names (`project:<name>:read`), group paths (`/projects/<name>`) and URLs, so it holds
no `:`, `/` or space and needs no escaping anywhere.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")  # the CHECK of rpacs.project.name (sql/018_projects.sql)
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)+$")  # a StudyInstanceUID: at least two digit groups
MAX_IDS = 100_000
# header cells, lower-case without spaces, `_` and `-`
UID_HEADERS = frozenset({"studyinstanceuid", "studyuid", "uid"})
ACCESSION_HEADERS = frozenset({"accessionnumber", "accession", "acc", "accessionno"})


class ProjectError(Exception):
    """A request about a project that cannot be done: `status` is the HTTP status it answers (400 bad input,
    403 no access, 404 unknown project or study, 409 conflict, 413 too large)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def check_name(value: object) -> str:
    """`value` if it is a valid project name, else ProjectError 400 saying the rule."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        shown = str(value)[:80]
        raise ProjectError(
            400,
            f"a project name is 2-63 characters: lower-case letters, digits, '-' and '_', starting with a letter "
            f"or digit; got {shown!r}",
        )
    return value


def is_uid(value: str) -> bool:
    return len(value) <= 64 and bool(UID_RE.match(value))


@dataclass
class IdList:
    """What a CSV named: StudyInstanceUIDs and accession numbers (in order, each once), and the lines refused."""

    uids: list[str] = field(default_factory=list)
    accessions: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # "line 7: ..." for values that are neither
    header: str | None = None  # the header cell of the column read, when the first line is a header


def parse_id_csv(text: str) -> IdList:
    """Accession numbers or StudyInstanceUIDs from a CSV (`,`, `;` or tab separated; a header is detected).

    With a header, the column named like a UID (`StudyInstanceUID`, `study_uid`, `uid`, …) or an accession
    number (`AccessionNumber`, `accession`, …) is read, and every value of it is of that kind (an accession
    number may be all digits); without one, the first column, and each value that looks like a UID (digits
    with at least one dot) is a UID, any other an accession number. Empty lines and cells are skipped."""
    sample = text[:4096]
    delimiter = (
        max((",", ";", "\t"), key=lambda d: sample.count(d)) if any(d in sample for d in ",;\t") else ","
    )
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if any(c.strip() for c in r)]
    out = IdList()
    if not rows:
        return out
    column, kind = 0, None
    first = [re.sub(r"[\s_-]", "", c.lower().lstrip("\ufeff")) for c in rows[0]]
    for i, cell in enumerate(first):
        if cell in UID_HEADERS or cell in ACCESSION_HEADERS:
            column, kind = i, "uid" if cell in UID_HEADERS else "accession"
            out.header = rows[0][i].strip().lstrip("\ufeff")
            rows = rows[1:]
            break
    else:  # no known header: a first line whose first cell is neither kind of value is a header of another name
        head = rows[0][0].strip().lstrip("\ufeff") if rows[0] else ""
        if head and not is_uid(head) and not re.match(r"^[A-Za-z0-9._-]{1,16}$", head):
            out.header = rows[0][0].strip()
            rows = rows[1:]
    seen: set[str] = set()
    if len(rows) > MAX_IDS:
        raise ProjectError(413, f"the CSV lists {len(rows)} studies; at most {MAX_IDS} at once")
    for number, row in enumerate(rows, start=2 if out.header is not None else 1):
        value = row[column].strip() if column < len(row) else ""
        if not value or value in seen:
            continue
        seen.add(value)
        if kind == "uid" or (kind is None and "." in value):
            if is_uid(value):
                out.uids.append(value)
            else:
                out.bad.append(f"line {number}: {value[:80]!r} is not a StudyInstanceUID")
        elif len(value) <= 16 and "\\" not in value and not any(ord(c) < 32 for c in value):
            out.accessions.append(value)  # AccessionNumber is an SH: at most 16 characters
        else:
            out.bad.append(
                f"line {number}: {value[:80]!r} is not an accession number (at most 16 characters)"
            )
    return out
