"""One audit row, and how a web call becomes one.

The observer keeps only references to what the request and response already hold (:class:`WebCall`, built in
microseconds); counting rows and finding study UIDs in the answer (:func:`from_web_call`) runs on the writer
thread, never on Orthanc's HTTP thread.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

SOURCES = ("web", "cli", "plugin")
# Keys whose value is a StudyInstanceUID (or a list of them), in answers, path parameters, query and bodies.
STUDY_KEYS = frozenset(
    {"study_instance_uid", "study_uid", "studyinstanceuid", "study_instance_uids", "study_uids", "studies"}
)
PARAM_STUDY_KEYS = frozenset({"uid", "study", "study_uid", "study_instance_uid"})
# Routes whose answers name studies without showing their data (the audit trail itself): no study UIDs recorded,
# so "who saw this patient's data" is not answered with the privacy officer's own searches (they stay in params).
NO_STUDY_PERMISSIONS = frozenset({"audit:read"})
# Request-body fields recorded (bodies themselves never are: they may carry secrets).
BODY_FIELDS = ("from", "to", "force", "census")
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)+$")
_JSON_UID_RE = re.compile(
    rb'"(?i:'
    + b"|".join(k.encode() for k in sorted(STUDY_KEYS))
    + rb')"\s*:\s*(?:"([0-9.]{3,64})"|\[((?:\s*"[0-9.]{3,64}"\s*,?)*\s*)\])'
)
# The page API's answers are {"rows": [...], "count": len(rows), ...} (nmdose.web.export.answer): the last
# `], "count": N` closes the rows list, which saves parsing a large answer only to count it.
_ROWS_COUNT_RE = re.compile(rb'\], "count": (\d+)[,}]')
_UID_IN_LIST_RE = re.compile(rb'"([0-9.]{3,64})"')
_XLSX_UID_RE = re.compile(rb"<t(?: [^>]*)?>([0-9]+(?:\.[0-9]+){3,})</t>")
_SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "authorization", "apikey", "api_key")


@dataclass
class AuditEvent:
    source: str
    action: str
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    actor_username: str | None = None
    actor_subject: str | None = None
    actor_roles: list[str] = field(default_factory=list)
    client_address: str | None = None
    peer_address: str | None = None
    forwarded_for: str | None = None
    method: str | None = None
    path: str | None = None
    permission: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    study_uids: list[str] = field(default_factory=list)
    study_uids_total: int | None = None
    rows_returned: int | None = None
    format: str | None = None
    status: int | None = None
    outcome: str = "success"
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"audit source must be one of {SOURCES}, got {self.source!r}")


@dataclass
class WebCall:
    """What the observer keeps of one dispatched route (references only; the body is immutable bytes)."""

    at: dt.datetime
    method: str
    path: str
    permission: str | None
    query: dict[str, str]
    params: dict[str, str]
    headers: dict[str, str]
    request_body: bytes
    user: Any
    peer: str | None
    status: int
    content_type: str
    response_body: bytes
    detail: dict[str, Any] = field(default_factory=dict)  # the handler's (Response.audit)


def header(headers: dict[str, str], name: str) -> str | None:
    """A header by case-insensitive name (Orthanc hands them over lower-cased; tests may not)."""
    value = headers.get(name)
    if value is None:
        lname = name.lower()
        for k, v in headers.items():
            if k.lower() == lname:
                return v
    return value


def client_addresses(headers: dict[str, str], peer: str | None) -> tuple[str | None, str | None]:
    """(client address, forwarded header as received): the first X-Forwarded-For entry (the original client as
    the first proxy saw it), else X-Real-IP, else the peer that connected."""
    xff = header(headers, "X-Forwarded-For")
    real = header(headers, "X-Real-IP")
    forwarded = "; ".join(f"{n}: {v}" for n, v in (("X-Forwarded-For", xff), ("X-Real-IP", real)) if v)
    client = None
    if xff:
        client = xff.split(",")[0].strip() or None
    if client is None and real:
        client = real.strip() or None
    return (client or peer), (forwarded[:500] or None)


def is_secret_key(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in _SECRET_WORDS)


def clean_params(query: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Query and path parameters to record; values of secret-looking names are masked."""
    out: dict[str, Any] = {}
    for source in (query, params):
        for k, v in (source or {}).items():
            out[str(k)] = "***" if is_secret_key(str(k)) else str(v)[:500]
    return out


def route_of(path: str, params: dict[str, str]) -> str:
    """The route pattern from the path and its parameters: /api/dose/study/1.2.3 -> /api/dose/study/{uid}."""
    if not params:
        return path
    parts = path.rstrip("/").split("/")
    values = {v: k for k, v in params.items()}
    return "/".join("{" + values[p] + "}" if p in values else p for p in parts)


def answer_format(query: dict[str, str], content_type: str) -> str:
    ct = (content_type or "").lower()
    if "csv" in ct:
        return "csv"
    if "spreadsheetml" in ct:
        return "xlsx"
    if "json" in ct:
        return "json"
    if "html" in ct:
        return "html"
    return (query or {}).get("format") or "other"


def _uid(value: Any) -> str | None:
    if isinstance(value, str) and len(value) <= 64 and _UID_RE.match(value):
        return value
    return None


class UidCollector:
    """Distinct study UIDs in order of appearance; keeps at most `limit`, counts them all."""

    def __init__(self, limit: int):
        self.limit = limit
        self.seen: set[str] = set()
        self.kept: list[str] = []

    def add(self, value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        for v in values:
            uid = _uid(v)
            if uid is not None and uid not in self.seen:
                self.seen.add(uid)
                if len(self.kept) < self.limit:
                    self.kept.append(uid)

    def scan_json(self, body: bytes) -> None:
        """Values of STUDY_KEYS in a JSON text (a string or a list of strings), by regular expression over the
        bytes: the same answer as walking the parsed document, at a fraction of its cost (the writer thread
        shares the interpreter lock with the request threads)."""
        # findall and dict.fromkeys run in C: only the distinct values reach Python code
        for single, listed in dict.fromkeys(_JSON_UID_RE.findall(body)):
            if single:
                self.add(single.decode())
            else:
                self.add([u.decode() for u in _UID_IN_LIST_RE.findall(listed)])

    def walk(self, data: Any, depth: int = 0) -> None:
        """Values of STUDY_KEYS anywhere in a JSON document (depth-limited)."""
        if depth > 6:
            return
        if isinstance(data, dict):
            for k, v in data.items():
                if isinstance(k, str) and k.lower() in STUDY_KEYS:
                    self.add(v)
                elif isinstance(v, dict | list):
                    self.walk(v, depth + 1)
        elif isinstance(data, list):
            for item in data:
                if isinstance(item, dict | list):
                    self.walk(item, depth + 1)

    @property
    def total(self) -> int:
        return len(self.seen)


def rows_and_uids(body: bytes, fmt: str, status: int, uids: UidCollector) -> int | None:
    """Rows in an answer: a JSON list or the list under "rows" (another object counts as 1), CSV records after
    the header, XLSX rows of the data sheets (every sheet after "Summary") less their header. Errors: 0."""
    if status >= 400:
        return 0
    if not (200 <= status < 300) or not body:
        return None if fmt not in ("json", "csv", "xlsx") else 0
    if fmt == "json":
        uids.scan_json(body)
        if body.startswith(b'{"rows": [') and len(body) > 65536:
            tail = body.rfind(b'], "count": ')
            m = _ROWS_COUNT_RE.match(body, tail) if tail > 0 else None
            if m:
                return int(m.group(1))
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if isinstance(data, list):
            return len(data)
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            return len(data["rows"])
        return 1
    if fmt == "csv":
        text = body.decode("utf-8-sig", "replace")
        reader = csv.reader(io.StringIO(text, newline=""))
        head = next(reader, None)
        if head is None:
            return 0
        cols = [i for i, h in enumerate(head) if h.strip().lower() in STUDY_KEYS]
        n = 0
        for record in reader:
            if not record:
                continue
            n += 1
            for i in cols:
                if i < len(record):
                    uids.add(record[i])
        return n
    if fmt == "xlsx":
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as zf:
                sheets = sorted(
                    (n for n in zf.namelist() if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n)),
                    key=lambda n: int(re.findall(r"\d+", n)[-1]),
                )
                n = 0
                for name in sheets[1:]:  # the first sheet is the summary (nmdose.web.xlsx)
                    n += max(zf.read(name).count(b"<row") - 1, 0)
                for name in [n for n in zf.namelist() if n == "xl/sharedStrings.xml"] + sheets[1:]:
                    for m in _XLSX_UID_RE.finditer(zf.read(name)):
                        uids.add(m.group(1).decode())
                return n
        except (zipfile.BadZipFile, KeyError):
            return None
    return None


def _request_json(body: bytes) -> Any:
    """A small JSON request body, for its allow-listed fields and study UIDs only (never stored whole)."""
    if not body or len(body) > 1_000_000:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def outcome_of(status: int) -> str:
    if status in (401, 403):
        return "denied"
    return "success" if status < 400 else "failure"


def from_web_call(call: WebCall, max_study_uids: int = 1000) -> AuditEvent:
    """The audit row of one web call (on the writer thread: may parse the answer)."""
    uids = UidCollector(max_study_uids)
    for k, v in (call.params or {}).items():
        if k.lower() in PARAM_STUDY_KEYS:
            uids.add(v)
    for k, v in (call.query or {}).items():
        if k.lower() in PARAM_STUDY_KEYS:
            uids.add(v)
    params = clean_params(call.query, call.params)
    body = _request_json(call.request_body)
    if isinstance(body, dict):
        for k in BODY_FIELDS:
            if k in body and isinstance(body[k], str | int | float | bool | None):
                params[f"body.{k}"] = body[k]
        for k, v in body.items():
            if isinstance(k, str) and k.lower() in STUDY_KEYS:
                uids.add(v if isinstance(v, list) else [v])
    fmt = answer_format(call.query, call.content_type)
    rows = rows_and_uids(call.response_body, fmt, call.status, uids)
    if (
        call.permission in NO_STUDY_PERMISSIONS
    ):  # reading the trail shows who accessed, not the patient's data
        uids = UidCollector(0)
    user = call.user
    username = getattr(user, "username", None) or (str(user) if user is not None else None)
    subject = getattr(user, "subject", None) or getattr(user, "sub", None)
    roles = [str(r) for r in (getattr(user, "roles", None) or ())]
    client, forwarded = client_addresses(call.headers, call.peer)
    detail: dict[str, Any] = dict(call.detail or {})
    if call.status >= 400 and call.response_body and len(call.response_body) < 4000:
        try:
            err = json.loads(call.response_body)
            if isinstance(err, dict) and "error" in err:
                detail["error"] = str(err["error"])[:300]
        except ValueError:
            pass
    agent = header(call.headers, "User-Agent")
    if agent:
        detail["user_agent"] = agent[:200]
    original = header(call.headers, "X-Original-URI") or header(call.headers, "X-Original-Path")
    if original:  # the HTTPS proxy asks a route whether to forward a request (web/routes_pseudo.py): name it
        detail["authorizes"] = (
            f"{(header(call.headers, 'X-Original-Method') or '')[:10]} {original[:300]}".strip()
        )
    return AuditEvent(
        source="web",
        action=route_of(call.path, call.params),
        at=call.at,
        actor_username=username,
        actor_subject=str(subject) if subject else None,
        actor_roles=roles,
        client_address=client,
        peer_address=call.peer,
        forwarded_for=forwarded,
        method=call.method.upper(),
        path=call.path,
        permission=call.permission,
        params=params,
        study_uids=uids.kept,
        study_uids_total=uids.total,
        rows_returned=rows,
        format=fmt,
        status=call.status,
        outcome=outcome_of(call.status),
        detail=detail,
    )
