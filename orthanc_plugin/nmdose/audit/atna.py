"""IHE ATNA: each audit row also as a DICOM Audit Message (PS3.15 A.5) in an RFC 5424 syslog message, sent over
TCP with RFC 6587 octet counting, over TLS (RFC 5425) when configured, to an Audit Record Repository.

The database row stays the record; the repository gets a copy that nmdose cannot alter afterwards. A failed
send is logged by the writer and not retried (docs/audit.md).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import socket
import ssl
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlencode

from nmdose.audit.event import AuditEvent

log = logging.getLogger("nmdose.audit")

FACILITY_AUTHPRIV = 10  # "security/authorization messages" (RFC 5424 6.2.1), as IHE ATNA asks
MSGID = "IHE+RFC-3881"
MAX_STUDY_OBJECTS = 50  # per message; the rest are counted in a detail (syslog receivers cap message sizes)

# (csd-code, originalText) of DICOM Controlled Terminology (PS3.16, CID 400 / 401 / 402)
AUDIT_LOG_USED = ("110101", "Audit Log Used")
BEGIN_TRANSFER = ("110102", "Begin Transferring DICOM Instances")
INSTANCES_ACCESSED = ("110103", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = ("110104", "DICOM Instances Transferred")
STUDY_DELETED = ("110105", "DICOM Study Deleted")
EXPORT = ("110106", "Export")
IMPORT = ("110107", "Import")
QUERY = ("110112", "Query")
SECURITY_ALERT = ("110113", "Security Alert")
USER_AUTHENTICATION = ("110114", "User Authentication")
LOGIN = ("110122", "Login")
SOFTWARE_CONFIGURATION = ("110131", "Software Configuration")
RESTRICTED_FUNCTION = ("110132", "Use of Restricted Function")
OBJECT_SECURITY_CHANGED = ("110135", "Object Security Attributes Changed")
SOURCE_ROLE = ("110153", "Source Role ID")
DESTINATION_ROLE = ("110152", "Destination Role ID")
STUDY_UID_TYPE = ("110180", "Study Instance UID")

# command-line and plugin actions -> (event, action code, event type or None)
ACTIONS = {
    "census run": (QUERY, "E", None),
    "census accept": (SECURITY_ALERT, "E", SOFTWARE_CONFIGURATION),
    "retrieve run": (INSTANCES_TRANSFERRED, "C", None),
    "retrieve retry": (BEGIN_TRANSFER, "E", None),
    "retrieve csv": (BEGIN_TRANSFER, "E", None),
    "retrieve csv --run": (INSTANCES_TRANSFERRED, "C", None),
    "forward study": (INSTANCES_TRANSFERRED, "R", None),
    "study forwarded": (INSTANCES_TRANSFERRED, "R", None),
    "forward selective": (INSTANCES_TRANSFERRED, "R", None),
    "forward purge": (STUDY_DELETED, "D", None),
    "auto_delete purge": (STUDY_DELETED, "D", None),
    "forward protect": (SECURITY_ALERT, "E", OBJECT_SECURITY_CHANGED),
    "forward unprotect": (SECURITY_ALERT, "E", OBJECT_SECURITY_CHANGED),
    "dose ingest": (IMPORT, "C", None),
    "audit purge": (AUDIT_LOG_USED, "D", None),
}
TRANSFER_POSTS = ("/retrieve", "/forward/studies/{uid}")


def _code(parent: ET.Element, tag: str, code: tuple[str, str]) -> ET.Element:
    return ET.SubElement(parent, tag, {"csd-code": code[0], "codeSystemName": "DCM", "originalText": code[1]})


def classify(e: AuditEvent) -> tuple[tuple[str, str], str, tuple[str, str] | None]:
    """(EventID, EventActionCode, EventTypeCode) of a row."""
    if e.source != "web":
        return ACTIONS.get(e.action, (QUERY, "E", None))
    if e.permission == "audit:read":
        return AUDIT_LOG_USED, "R", None
    if e.status == 401:
        return USER_AUTHENTICATION, "E", LOGIN
    if e.status == 403:
        return SECURITY_ALERT, "E", RESTRICTED_FUNCTION
    if e.action == "/session":
        return USER_AUTHENTICATION, "E", LOGIN
    if e.method != "GET":
        if e.action in TRANSFER_POSTS:
            return BEGIN_TRANSFER, "E", None
        return QUERY, "E", None
    if e.format in ("csv", "xlsx"):
        return EXPORT, "R", None
    if "{uid}" in e.action:
        return INSTANCES_ACCESSED, "R", None
    return QUERY, "E", None


def _outcome(e: AuditEvent) -> str:
    if e.outcome == "success":
        return "0"
    if e.status is not None and e.status >= 500:
        return "8"
    return "4"


def _access_point(value: str) -> tuple[str, str]:
    try:
        ipaddress.ip_address(value)
        return value, "2"
    except ValueError:
        return value, "1"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _token(text: str, limit: int = 256) -> str:
    return " ".join(str(text).split())[:limit] or "-"


def audit_message(
    e: AuditEvent, *, source_id: str, site_id: str | None = None, host: str | None = None
) -> bytes:
    """The DICOM Audit Message (XML, UTF-8) of one audit row."""
    host = host or socket.gethostname()
    event_id, action_code, type_code = classify(e)
    root = ET.Element("AuditMessage")
    ident = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": action_code,
            "EventDateTime": e.at.astimezone(dt.UTC).isoformat(),
            "EventOutcomeIndicator": _outcome(e),
        },
    )
    _code(ident, "EventID", event_id)
    if type_code is not None:
        _code(ident, "EventTypeCode", type_code)
    if e.outcome != "success":
        ET.SubElement(
            ident, "EventOutcomeDescription"
        ).text = f"{e.status} {e.detail.get('error', '')}".strip()[:500]
    # the person (or the plugin) who did it
    user = ET.SubElement(
        root,
        "ActiveParticipant",
        {"UserID": e.actor_username or e.actor_subject or "unknown", "UserIsRequestor": "true"},
    )
    if e.actor_subject and e.actor_username:
        user.set("AlternativeUserID", e.actor_subject)
    if e.actor_username:
        user.set("UserName", e.actor_username)
    if e.client_address:
        nap, kind = _access_point(e.client_address)
        user.set("NetworkAccessPointID", nap)
        user.set("NetworkAccessPointTypeCode", kind)
    # nmdose itself
    app = ET.SubElement(
        root,
        "ActiveParticipant",
        {
            "UserID": f"nmdose@{host}",
            "AlternativeUserID": str(os.getpid()),
            "UserIsRequestor": "false",
            "NetworkAccessPointID": host,
            "NetworkAccessPointTypeCode": "1",
        },
    )
    if event_id in (INSTANCES_TRANSFERRED, BEGIN_TRANSFER):
        _code(app, "RoleIDCode", DESTINATION_ROLE if action_code == "C" else SOURCE_ROLE)
    source = ET.SubElement(root, "AuditSourceIdentification", {"AuditSourceID": source_id})
    if site_id:
        source.set("AuditEnterpriseSiteID", site_id)
    ET.SubElement(source, "AuditSourceTypeCode", {"csd-code": "3" if e.source == "web" else "4"})
    # what was asked (route or action and its parameters), then the studies concerned
    asked = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": _token(("/nmdose" if e.source == "web" else "") + (e.path or e.action)),
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "24" if event_id == QUERY else "3",
        },
    )
    ET.SubElement(
        asked,
        "ParticipantObjectIDTypeCode",
        {"csd-code": "12", "codeSystemName": "RFC-3881", "originalText": "URI"},
    )
    ET.SubElement(asked, "ParticipantObjectQuery").text = _b64(
        urlencode({k: str(v) for k, v in e.params.items()})
    )
    for key, value in (
        ("source", e.source),
        ("action", e.action),
        ("rows", e.rows_returned),
        ("format", e.format),
    ):
        if value is not None:
            ET.SubElement(asked, "ParticipantObjectDetail", {"type": key, "value": _b64(str(value))})
    total = e.study_uids_total or len(e.study_uids)
    if total > min(len(e.study_uids), MAX_STUDY_OBJECTS):
        ET.SubElement(asked, "ParticipantObjectDetail", {"type": "studies_total", "value": _b64(str(total))})
    for uid in e.study_uids[:MAX_STUDY_OBJECTS]:
        study = ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": uid,
                "ParticipantObjectTypeCode": "2",
                "ParticipantObjectTypeCodeRole": "3",
            },
        )
        _code(study, "ParticipantObjectIDTypeCode", STUDY_UID_TYPE)
        ET.SubElement(study, "ParticipantObjectName").text = uid
        desc = ET.SubElement(study, "ParticipantObjectDescription")
        ET.SubElement(ET.SubElement(desc, "ParticipantObjectContainsStudy"), "StudyIDs", {"UID": uid})
    # one line: syslog receivers store a message per line
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="utf-8")


def syslog_frame(
    xml: bytes, *, at: dt.datetime, failed: bool, app_name: str = "nmdose", host: str | None = None
) -> bytes:
    """One RFC 5424 message (PRI VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG with a UTF-8 BOM),
    framed for TCP by octet counting (RFC 6587 3.4.1, also RFC 5425 4.3)."""
    severity = 4 if failed else 5  # warning / notice
    stamp = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    hostname = _token(host or socket.gethostname(), 255).replace(" ", "_")
    header = (
        f"<{FACILITY_AUTHPRIV * 8 + severity}>1 {stamp} {hostname} {app_name[:48]} {os.getpid()} {MSGID} - "
    )
    message = header.encode("ascii") + b"\xef\xbb\xbf" + xml
    return str(len(message)).encode("ascii") + b" " + message


class SyslogSink:
    """Sends each written batch to the configured repository over one kept connection (reopened after an
    error; one retry per batch)."""

    def __init__(self, cfg):
        self.settings = cfg.audit.syslog
        self.config_dir = Path(cfg.config_dir)
        self.source_id = f"{getattr(cfg, 'research_node', None) and cfg.research_node.name or 'nmdose'}@{socket.gethostname()}"
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.sent = 0

    def _path(self, value: str | None) -> str | None:
        if not value:
            return None
        p = Path(value)
        return str(p if p.is_absolute() else self.config_dir / p)

    def _connect(self) -> socket.socket:
        s = self.settings
        raw = socket.create_connection((s.host, s.port), timeout=s.timeout_s)
        if not s.tls:
            return raw
        ctx = ssl.create_default_context(cafile=self._path(s.ca_certificates))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if s.client_certificate:
            ctx.load_cert_chain(self._path(s.client_certificate), self._path(s.client_private_key))
        return ctx.wrap_socket(raw, server_hostname=s.host)

    def frames(self, events: list[AuditEvent]) -> bytes:
        return b"".join(
            syslog_frame(
                audit_message(e, source_id=self.source_id, site_id=self.settings.site_id),
                at=e.at,
                failed=e.outcome != "success",
                app_name=self.settings.app_name,
            )
            for e in events
        )

    def __call__(self, events: list[AuditEvent]) -> None:
        data = self.frames(events)
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._sock is None:
                        self._sock = self._connect()
                    self._sock.sendall(data)
                    self.sent += len(events)
                    return
                except OSError:
                    self.close()
                    if attempt == 2:
                        raise

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def send(cfg, events: list[AuditEvent]) -> None:
    """One-shot send (the command line, which has no writer thread)."""
    sink = SyslogSink(cfg)
    try:
        sink(events)
    finally:
        sink.close()
