"""The pure parts of "complete or visibly not": the research-PACS fingerprint a plan records and the reasons the
incomplete list gives (the rest runs on the real stack: tests/integration/test_forward_complete.py)."""

from __future__ import annotations

from nmdose.forward import runner


def test_a_fingerprint_changes_with_any_stored_instance_and_not_with_the_order_of_ids():
    a = runner.fingerprint([("s1", "20260630T101500"), ("s2", "20260630T101501")])
    assert a == runner.fingerprint([("s2", "20260630T101501"), ("s1", "20260630T101500")])
    assert a != runner.fingerprint([("s1", "20260630T101509"), ("s2", "20260630T101501")])  # a new instance
    assert a != runner.fingerprint([("s1", "20260630T101500")])  # an Orthanc study gone


def _row(category, **kw):
    base = {"category": category, "stuck": False, "job_live": True, "state": "pending", "retrieval": "done",
            "last_error": None, "attempts": 0}  # fmt: skip
    return {**base, **kw}


def test_each_category_says_why_the_forwarded_set_is_incomplete():
    assert (
        runner._reason(_row("retrieval", retrieval="partial"))
        == "waiting for its retrieval (partial) to finish"
    )
    assert runner._reason(_row("failed", stuck=True, last_error="no study")) == "forward failed: no study"
    assert runner._reason(_row("stale", job_live=False)).endswith("not re-planned yet")
    assert runner._reason(_row("stale")).endswith("re-planning")
    assert "nothing would forward it" in runner._reason(_row("orphan", job_live=False))
    assert "never seen" in runner._reason(_row("not_seen"))
    assert runner._reason(_row("forwarding")) == "queued"
    assert runner._reason(_row("forwarding", state="sending")) == "sending"
    retrying = runner._reason(_row("forwarding", attempts=3, last_error="C-STORE failed"))
    assert retrying == "retrying after 3 failed attempts: C-STORE failed"


def test_orthanc_last_update_is_read_as_utc_whatever_the_host_time_zone(monkeypatch):
    import time as _time
    from datetime import UTC, datetime

    monkeypatch.setenv("TZ", "Asia/Seoul")
    _time.tzset()
    try:
        assert runner.orthanc_time("20260630T101500") == datetime(2026, 6, 30, 10, 15, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        _time.tzset()
    assert runner.orthanc_time("garbage") is None and runner.orthanc_time(None) is None
