"""DICOM Audit Messages (PS3.15 A.5) of audit rows: valid against the standard's RELAX NG schema, the right event
for each kind of row, and the RFC 5424 / RFC 6587 framing."""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path

import pytest
from lxml import etree

from nmdose.audit import atna
from nmdose.audit.actions import build
from nmdose.audit.event import AuditEvent

SCHEMA = etree.RelaxNG.from_rnc_string((Path(__file__).parents[1] / "dicom_audit_message.rnc").read_text())
UID = "1.2.826.0.1.3680043.8.498.1"


def web(**kw) -> AuditEvent:
    base = dict(source="web", action="/api/research/yearly", method="GET", path="/api/research/yearly",
                permission="research:read", actor_username="kim", actor_subject="0f1e-sub", client_address="10.1.2.3",
                params={"from_year": "2020"}, rows_returned=12, format="json", status=200)  # fmt: skip
    base.update(kw)
    return AuditEvent(**base)


CASES = [
    ("query", web(), "110112", "E", None),
    (
        "export",
        web(action="/api/dose/ct-events", format="csv", study_uids=[UID], study_uids_total=1),
        "110106",
        "R",
        None,
    ),
    (
        "accessed",
        web(action="/api/dose/study/{uid}", path=f"/api/dose/study/{UID}", study_uids=[UID]),
        "110103",
        "R",
        None,
    ),
    (
        "no token",
        web(
            status=401,
            outcome="denied",
            actor_username=None,
            actor_subject=None,
            detail={"error": "missing bearer token"},
        ),
        "110114",
        "E",
        "110122",
    ),  # fmt: skip
    (
        "forbidden",
        web(status=403, outcome="denied", detail={"error": "lacks permission"}),
        "110113",
        "E",
        "110132",
    ),
    (
        "login",
        web(action="/session", method="POST", path="/session", permission="authenticated"),
        "110114",
        "E",
        "110122",
    ),
    (
        "retrieve",
        web(action="/retrieve", method="POST", path="/retrieve", status=202, study_uids=[UID]),
        "110102",
        "E",
        None,
    ),
    ("audit read", web(action="/api/audit", permission="audit:read"), "110101", "R", None),
    ("server error", web(status=500, outcome="failure"), "110112", "E", None),
    ("forwarded", build("study forwarded", source="plugin", study_uids=[UID], rows=3), "110104", "R", None),
    (
        "auto delete",
        build("auto_delete purge", source="plugin", study_uids=[UID, UID + "1"]),
        "110105",
        "D",
        None,
    ),
    ("ingest", build("dose ingest", source="cli", study_uids=[UID]), "110107", "C", None),
    ("protect", build("forward protect", source="cli", study_uids=[UID]), "110113", "E", "110135"),
    ("accept", build("census accept", source="cli"), "110113", "E", "110131"),
    ("purge", build("audit purge", source="cli", params={"retention_days": 1826}), "110101", "D", None),
    ("census", build("census run", source="cli", status=1), "110112", "E", None),
]


@pytest.mark.parametrize("name,event,event_id,action,type_code", CASES, ids=[c[0] for c in CASES])
def test_each_kind_of_row_gives_a_schema_valid_message(name, event, event_id, action, type_code):
    xml = atna.audit_message(event, source_id="researchPACS@pacs1", site_id="Hospital", host="pacs1")
    doc = etree.fromstring(xml)
    assert SCHEMA.validate(doc), SCHEMA.error_log
    ident = doc.find("EventIdentification")
    assert ident.find("EventID").get("csd-code") == event_id and ident.get("EventActionCode") == action
    types = [t.get("csd-code") for t in ident.findall("EventTypeCode")]
    assert types == ([type_code] if type_code else [])
    assert ident.get("EventOutcomeIndicator") == {"success": "0"}.get(
        event.outcome, "8" if event.status == 500 else "4"
    )
    studies = [p.get("ParticipantObjectID") for p in doc.findall("ParticipantObjectIdentification")
               if p.find("ParticipantObjectIDTypeCode").get("csd-code") == "110180"]  # fmt: skip
    assert studies == event.study_uids
    requestor = doc.find("ActiveParticipant")
    assert requestor.get("UserIsRequestor") == "true"
    assert requestor.get("UserID") == (event.actor_username or event.actor_subject or "unknown")
    query = doc.find("ParticipantObjectIdentification/ParticipantObjectQuery")
    assert base64.b64decode(query.text or "").decode() == "&".join(
        f"{k}={v}" for k, v in event.params.items()
    )


def test_a_message_that_breaks_the_schema_is_refused():
    """The validation can fail: an unknown outcome value or a missing EventID is refused."""
    doc = etree.fromstring(atna.audit_message(web(), source_id="x"))
    doc.find("EventIdentification").set("EventOutcomeIndicator", "1")
    assert not SCHEMA.validate(doc)
    doc = etree.fromstring(atna.audit_message(web(), source_id="x"))
    ident = doc.find("EventIdentification")
    ident.remove(ident.find("EventID"))
    assert not SCHEMA.validate(doc)


def test_large_exports_name_the_first_studies_and_count_all():
    uids = [f"1.2.3.{i}" for i in range(120)]
    doc = etree.fromstring(
        atna.audit_message(web(format="xlsx", study_uids=uids, study_uids_total=5000), source_id="x")
    )
    assert SCHEMA.validate(doc)
    assert len(doc.findall("ParticipantObjectIdentification")) == 1 + atna.MAX_STUDY_OBJECTS
    details = {d.get("type"): base64.b64decode(d.get("value")).decode()
               for d in doc.findall("ParticipantObjectIdentification/ParticipantObjectDetail")}  # fmt: skip
    assert details["studies_total"] == "5000" and details["format"] == "xlsx"


def test_syslog_frame_is_rfc5424_with_octet_counting():
    at = dt.datetime(2026, 12, 5, 3, 4, 5, 123456, tzinfo=dt.UTC)
    xml = atna.audit_message(web(), source_id="x")
    frame = atna.syslog_frame(xml, at=at, failed=False, app_name="nmdose", host="pacs1")
    length, _, message = frame.partition(b" ")
    assert int(length) == len(message)
    m = re.match(rb"<(\d+)>1 (\S+) (\S+) (\S+) (\d+) (\S+) - \xef\xbb\xbf(.*)$", message, re.S)
    assert m, message[:120]
    assert int(m[1]) == 10 * 8 + 5 and m[2] == b"2026-12-05T03:04:05.123456Z" and m[3] == b"pacs1"
    assert (m[4], m[6]) == (b"nmdose", b"IHE+RFC-3881") and m[7] == xml and b"\n" not in xml
    failed = atna.syslog_frame(xml, at=at, failed=True, host="pacs1")
    assert failed.split(b" ", 1)[1].startswith(b"<84>1 ")
