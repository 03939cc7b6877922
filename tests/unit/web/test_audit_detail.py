"""What a handler adds to its call's audit row (`Response.audit` → the row's `detail`; the request body itself is
never recorded): the observer carries it to the row, and the acceptance of study descriptions names them there,
capped (web/routes_research.py `accepted_audit`)."""

from __future__ import annotations

import datetime as dt

from nmdose.audit.event import WebCall, from_web_call
from nmdose.audit.routes import make_observer
from nmdose.web.router import Request, Response
from nmdose.web.routes_research import AUDIT_DESCRIPTIONS, accepted_audit


class Writer:
    def __init__(self):
        self.items = []

    def submit(self, item):
        self.items.append(item)


def test_the_handlers_audit_detail_reaches_the_row_and_is_never_sent():
    writer = Writer()
    observe = make_observer(writer)
    resp = Response.json({"accepted": ["CT Chest"]})
    resp.audit = {"accepted": ["CT Chest"], "accepted_total": 1}
    request = Request("POST", "/api/research/descriptions/accept", body=b'{"descriptions": ["CT Chest"]}')
    observe(request, resp, "config:write")
    (call,) = writer.items
    event = from_web_call(call)
    assert event.detail["accepted"] == ["CT Chest"] and event.detail["accepted_total"] == 1
    assert b"accepted_total" not in resp.body and "accepted_total" not in str(resp.headers)
    assert not any("descriptions" in k for k in event.params)  # the body stays out


def test_a_call_without_audit_detail_has_the_usual_detail_only():
    call = WebCall(
        at=dt.datetime.now(dt.UTC), method="GET", path="/api/x", permission="dose:read", query={}, params={},
        headers={"User-Agent": "t"}, request_body=b"", user=None, peer=None, status=200,
        content_type="application/json", response_body=b"{}",
    )  # fmt: skip
    assert from_web_call(call).detail == {"user_agent": "t"}


def test_accepted_descriptions_are_capped_and_counted():
    many = [f"Exam {i:03d} " + "x" * 300 for i in range(AUDIT_DESCRIPTIONS + 10)]
    got = accepted_audit(many)
    assert got["accepted_total"] == AUDIT_DESCRIPTIONS + 10
    assert len(got["accepted"]) == AUDIT_DESCRIPTIONS == 50
    assert got["accepted"][0].startswith("Exam 000 ") and all(len(d) == 200 for d in got["accepted"])
    assert accepted_audit([]) == {"accepted": [], "accepted_total": 0}


def test_a_nul_character_is_recorded_marked_never_failing_the_batch():
    """PostgreSQL's text and jsonb hold no NUL: one in a query parameter failed the writer's whole batch, again
    and again (it retries); the row keeps the value with the NUL marked."""
    from nmdose.audit import store
    from nmdose.audit.event import AuditEvent

    event = AuditEvent(
        source="web", action="/api/x\x00", path="/api/x\x00", params={"who": "kim\x00", "k\x00": ["a\x00"]},
        detail={"error": "bad \x00"}, actor_roles=["r\x00"],
    )  # fmt: skip
    values = store._values(event)
    assert "\x00" not in repr([v.adapted if hasattr(v, "adapted") else v for v in values])
    params = values[store.COLUMNS.index("params")].adapted
    assert params == {"who": "kim\ufffd", "k\ufffd": ["a\ufffd"]}
    assert values[store.COLUMNS.index("path")] == "/api/x\ufffd"
