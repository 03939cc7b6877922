"""The audit trail against a real PostgreSQL and the research Orthanc with the plugin: append-only table (UPDATE,
DELETE, TRUNCATE refused, also for a runtime role), the retention purge, one row per non-public route called
through Orthanc (rows counted as the client counts them), the privacy officer's API and page, and the rows of
command-line and plugin actions."""

from __future__ import annotations

import contextlib
import csv
import getpass
import io
import json
import os
import sys
import time
import types
import urllib.error
import urllib.request
import uuid

import psycopg2
import pytest

from nmdose.audit import actions, routes, store
from nmdose.audit.event import AuditEvent
from nmdose.db import connect
from nmdose.web.router import PUBLIC, Request
from tests.support import scratch_database

pytestmark = pytest.mark.integration
UID = "1.2.826.0.1.3680043.8.498.424242"


@pytest.fixture(scope="module")
def scratch(stack):
    """A migrated database of its own (the purge and the router walk must not see other tests' rows)."""
    with scratch_database(stack.cfg, "audit") as scratch_cfg:
        yield scratch_cfg


def fetch(cfg, where: str = "true", args: tuple = ()) -> list[dict]:
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM audit.event WHERE {where} ORDER BY id", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def wait_rows(cfg, where: str, args: tuple, n: int, timeout_s: float = 15) -> list[dict]:
    """The rows once `n` are there (the plugin writes from a thread), and a moment later still exactly n."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = fetch(cfg, where, args)
        if len(rows) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    return fetch(cfg, where, args)


def insert(cfg, **kw) -> int:
    e = AuditEvent(source=kw.pop("source", "cli"), action=kw.pop("action", "test"), **kw)
    with contextlib.closing(connect(cfg)) as conn:
        store.insert(conn, [e])
        with conn.cursor() as cur:
            cur.execute("SELECT max(id) FROM audit.event")
            return cur.fetchone()[0]


# ----- append-only, retention


def test_update_delete_truncate_are_refused_even_for_the_owner(scratch):
    rid = insert(scratch, action="guarded")
    for sql in (
        "UPDATE audit.event SET actor_username = 'mallory' WHERE id = %s",
        "DELETE FROM audit.event WHERE id = %s",
        "SELECT set_config('nmdose.audit_purge', 'on', true); DELETE FROM audit.event WHERE id = %s",
        "TRUNCATE audit.event",
    ):
        with (
            contextlib.closing(connect(scratch, role="owner")) as conn,
            conn.cursor() as cur,
            pytest.raises(psycopg2.errors.InsufficientPrivilege, match="append-only"),
        ):
            cur.execute(sql, (rid,) if "%s" in sql else None)
    # the runtime roles hold no UPDATE, DELETE or TRUNCATE at all
    for role in ("worker", "web"):
        with (
            contextlib.closing(connect(scratch, role=role)) as conn,
            conn.cursor() as cur,
            pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied"),
        ):
            cur.execute("DELETE FROM audit.event WHERE id = %s", (rid,))
    assert [r["actor_username"] for r in fetch(scratch, "id = %s", (rid,))] == [None]


def test_a_runtime_role_can_insert_and_read_but_not_change(scratch):
    role = f"nmdose_audit_probe_{os.getpid()}"
    rid = insert(scratch, action="probe")
    with contextlib.closing(connect(scratch, role="admin", autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} NOLOGIN")
        try:
            cur.execute(f"GRANT USAGE ON SCHEMA audit TO {role}")
            cur.execute(f"GRANT SELECT, INSERT ON audit.event TO {role}")
            cur.execute(f"GRANT USAGE ON SEQUENCE audit.event_id_seq TO {role}")
            cur.execute(f"SET ROLE {role}")
            cur.execute("INSERT INTO audit.event (source, action) VALUES ('cli', 'as runtime role')")
            for sql in (
                "UPDATE audit.event SET action = 'x' WHERE id = %s",
                "DELETE FROM audit.event WHERE id = %s",
            ):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(sql, (rid,))
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("SELECT audit.purge(3650)")  # only the worker role may run the purge
            cur.execute("RESET ROLE")
            # even a role granted UPDATE and DELETE by mistake: the trigger refuses
            cur.execute(f"GRANT UPDATE, DELETE ON audit.event TO {role}")
            cur.execute(f"SET ROLE {role}")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="append-only"):
                cur.execute("DELETE FROM audit.event WHERE id = %s", (rid,))
        finally:
            cur.execute("RESET ROLE")
            cur.execute(f"DROP OWNED BY {role}")
            cur.execute(f"DROP ROLE {role}")
    with (
        contextlib.closing(connect(scratch, role="worker")) as conn,
        conn.cursor() as cur,
        pytest.raises(psycopg2.errors.InvalidParameterValue),
    ):
        cur.execute("SELECT audit.purge(365)")  # never less than two years, even for the worker
    assert len(fetch(scratch, "id = %s", (rid,))) == 1
    assert len(fetch(scratch, "action = 'as runtime role'")) == 1


def test_purge_removes_only_rows_older_than_the_retention(scratch):
    marker = uuid.uuid4().hex
    now = time.time()
    import datetime as dt

    ages = {"d800": 800, "d731": 731, "d729": 729, "d10": 10}
    for name, days in ages.items():
        at = dt.datetime.fromtimestamp(now - days * 86400, dt.UTC)
        insert(scratch, action=f"{marker}-{name}", at=at)
    with contextlib.closing(connect(scratch)) as conn:
        with pytest.raises(psycopg2.errors.InvalidParameterValue, match="at least 730"):
            store.purge(conn, 365)
        conn.rollback()
        assert store.purge(conn, 730, source="cli", by="tester") >= 2
    left = {r["action"].split("-")[1] for r in fetch(scratch, "action LIKE %s", (marker + "-%",))}
    assert left == {"d729", "d10"}
    last = fetch(scratch, "action = 'audit purge'")[-1]
    assert (last["actor_username"], last["source"], last["params"]) == (
        "tester",
        "cli",
        {"retention_days": 730},
    )
    assert last["detail"]["removed"] >= 2


# ----- web calls through the research Orthanc


def http(stack, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
    url = stack.cfg.research_node.http_url.rstrip("/") + "/nmdose" + path
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def test_each_non_public_call_through_orthanc_writes_one_row_with_its_row_count(stack):
    marker = f"audit-test-{uuid.uuid4().hex}"
    headers = {"User-Agent": marker, "X-Forwarded-For": "198.51.100.23, 10.0.0.1"}
    calls = [
        ("/api/research/yearly", "/api/research/yearly", "json"),
        ("/api/research/failed?format=csv", "/api/research/failed", "csv"),
        ("/api/dose/ct-events?format=xlsx", "/api/dose/ct-events", "xlsx"),
        ("/retrieve/studies?state=done", "/retrieve/studies", "json"),
        (f"/api/dose/study/{UID}", "/api/dose/study/{uid}", "json"),  # no record: 404
        ("/api/dose/box?measure=nonsense", "/api/dose/box", "json"),  # 400
        ("/health", None, None),  # public: no row
        ("/ui/dose", None, None),
        ("/static/audit.js", None, None),
    ]
    answers = {}
    for path, _route, _fmt in calls:
        answers[path] = http(stack, path, headers)
    rows = wait_rows(stack.cfg, "detail->>'user_agent' = %s", (marker,), 6)
    assert len(rows) == 6, [r["action"] for r in rows]
    by_route = {r["action"]: r for r in rows}
    for path, route, fmt in calls:
        if route is None:
            continue
        r = by_route[route]
        status, body, ctype = answers[path]
        assert (r["status"], r["format"], r["source"], r["method"]) == (status, fmt, "web", "GET"), route
        assert (r["client_address"], r["actor_username"]) == ("198.51.100.23", "dev")
        assert r["forwarded_for"].startswith("X-Forwarded-For: 198.51.100.23, 10.0.0.1")
        if status == 200 and fmt == "json":
            data = json.loads(body)
            assert r["rows_returned"] == (len(data["rows"]) if isinstance(data, dict) and "rows" in data else
                                          len(data) if isinstance(data, list) else 1)  # fmt: skip
        elif status == 200 and fmt == "csv":
            assert r["rows_returned"] == len(list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))) - 1
        elif status >= 400:
            assert r["rows_returned"] == 0 and r["outcome"] in ("failure", "denied")
    assert by_route["/api/dose/study/{uid}"]["study_uids"] == [UID]
    assert by_route["/api/dose/study/{uid}"]["params"] == {"uid": UID}
    assert by_route["/retrieve/studies"]["params"] == {"state": "done"}
    assert (
        by_route["/api/dose/box"]["status"] == 400
        and "measure" in by_route["/api/dose/box"]["detail"]["error"]
    )


def test_the_privacy_officer_finds_who_saw_a_study(stack):
    marker = f"audit-officer-{uuid.uuid4().hex}"
    uid = f"1.2.826.0.1.3680043.8.498.{int(time.time())}"
    status, _, _ = http(stack, f"/api/dose/study/{uid}", {"User-Agent": marker})
    assert status == 404
    wait_rows(stack.cfg, "detail->>'user_agent' = %s", (marker,), 1)
    status, body, ctype = http(stack, f"/api/audit?study={uid}", {"User-Agent": marker + "-q"})
    assert status == 200 and ctype.startswith("application/json")
    data = json.loads(body)
    assert [(r["action"], r["actor_username"], r["study_uids"]) for r in data["rows"]] == [
        ("/api/dose/study/{uid}", "dev", [uid])
    ]
    status, body, ctype = http(stack, f"/api/audit?study={uid}&format=csv", {})
    assert status == 200 and ctype.startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert [(r["action"], r["study_uids"]) for r in table] == [("/api/dose/study/{uid}", uid)]
    # newest first, paged; the audit queries are themselves audited
    rows = wait_rows(stack.cfg, "detail->>'user_agent' = %s", (marker + "-q",), 1)
    assert (rows[0]["action"], rows[0]["study_uids"], rows[0]["params"]) == ("/api/audit", [], {"study": uid})
    status, body, _ = http(stack, "/api/audit?limit=2&page=1", {})
    page1 = json.loads(body)
    assert len(page1["rows"]) == 2 and page1["more"] is True
    assert page1["rows"][0]["at"] >= page1["rows"][1]["at"]
    status, body, _ = http(stack, "/api/audit?from=yesterday", {})
    assert status == 400 and "from" in json.loads(body)["error"]


def test_audit_page_is_a_shell_with_no_inline_script(stack):
    status, body, ctype = http(stack, "/ui/audit", {})
    text = body.decode()
    assert status == 200 and ctype.startswith("text/html")
    assert 'href="../static/nmdose.css"' in text and '<script src="../static/audit.js"></script>' in text
    assert text.count("<script") == text.count("<script src=")
    status, body, ctype = http(stack, "/static/audit.js", {})
    assert status == 200 and ctype.startswith("text/javascript") and b"nmdoseFetch" in body


# ----- every route of the plugin, state-changing ones included, in-process on the scratch database


def _placeholder(pattern: str) -> str:
    return pattern.replace("{uid}", UID).replace("{name}", "nmdose.css")


def test_walking_the_router_writes_exactly_one_row_per_non_public_route(scratch):
    from nmdose.plugin import Plugin

    plugin = Plugin(scratch)
    marker = f"walk-{uuid.uuid4().hex}"
    expected = []
    for method, regex, _handler, permission in plugin.router.routes:
        pattern = regex.pattern.removeprefix("^").removesuffix("/?$")
        pattern = pattern.replace("(?P<uid>[^/]+)", "{uid}").replace("(?P<name>[^/]+)", "{name}")
        for other in ("folder", "sub"):  # the viewer's file routes (web/routes_viewer.py), public
            pattern = pattern.replace(f"(?P<{other}>[^/]+)", "x")
        assert "(?P<" not in pattern, pattern
        body = b"{}" if method in ("POST", "PUT") else b""
        headers = {"user-agent": marker, "content-type": "application/json"}
        resp = plugin.handle_rest(method, _placeholder(pattern), {}, headers, body)
        assert resp.status < 500 or resp.status == 503, (pattern, resp.status, resp.body[:200])
        if permission != PUBLIC:
            expected.append((method, pattern))
    assert plugin.audit_writer.flush(20)
    rows = fetch(scratch, "detail->>'user_agent' = %s", (marker,))
    assert sorted((r["method"], r["action"]) for r in rows) == sorted(expected)
    assert ("GET", "/api/audit") in expected and len(expected) >= 20
    plugin.audit_writer.stop()


# ----- command line and plugin actions


@pytest.fixture
def cli_main():
    from nmdose import cli

    return cli.main


def test_cli_actions_write_rows_with_the_os_user(stack, cli_main):
    uid = f"1.2.826.0.1.3680043.8.498.{int(time.time() * 1000)}"
    args = stack.cli_args()
    assert cli_main([*args, "forward", "protect", uid, "--reason", "audit test"]) == 0
    assert cli_main([*args, "forward", "unprotect", uid]) == 0
    rows = fetch(stack.cfg, "study_uids @> ARRAY[%s]::text[]", (uid,))
    assert [(r["action"], r["source"], r["actor_username"]) for r in rows] == [
        ("forward protect", "cli", getpass.getuser()),
        ("forward unprotect", "cli", getpass.getuser()),
    ]
    assert rows[0]["params"] == {"reason": "audit test"} and rows[1]["detail"] == {"was_protected": True}
    before = len(fetch(stack.cfg, "action = 'retrieve retry'"))
    assert cli_main([*args, "retrieve", "retry", "--failed"]) == 0
    assert len(fetch(stack.cfg, "action = 'retrieve retry'")) == before + 1
    assert cli_main([*args, "audit", "purge", "--json"]) == 0
    last = fetch(stack.cfg, "action = 'audit purge'")[-1]
    assert (last["source"], last["actor_username"], last["params"]) == (
        "cli",
        getpass.getuser(),
        {"retention_days": 1826},
    )
    assert cli_main([*args, "audit", "list", "--study", uid]) == 0
    assert cli_main([*args, "audit", "purge", "--retention-days", "30"]) != 0


def test_plugin_actions_are_recorded_only_inside_orthanc(scratch, monkeypatch):
    from nmdose.plugin import Plugin

    plugin = Plugin(scratch)  # registers its audit writer for this database
    uid = f"1.2.826.0.1.3680043.8.498.{int(time.time() * 1000) + 1}"
    assert actions.record_action(scratch, "study forwarded", study_uids=[uid], plugin_only=True) is False
    monkeypatch.setitem(sys.modules, "orthanc", types.ModuleType("orthanc"))
    assert actions.record_action(scratch, "study forwarded", study_uids=[uid], rows=3, plugin_only=True)
    assert plugin.audit_writer.flush(10)
    rows = fetch(scratch, "study_uids @> ARRAY[%s]::text[]", (uid,))
    assert [(r["action"], r["source"], r["actor_username"], r["rows_returned"]) for r in rows] == [
        ("study forwarded", "plugin", "nmdose", 3)
    ]
    plugin.audit_writer.stop()


def test_the_plugin_purges_on_start(scratch):
    routes.run_purge(scratch, source="plugin")
    last = fetch(scratch, "action = 'audit purge'")[-1]
    assert (last["source"], last["actor_username"]) == ("plugin", "nmdose")


def test_observer_request_is_cheap(scratch):
    """Queuing a row costs microseconds on the request thread (the INSERT happens on the writer thread)."""
    from nmdose.audit.writer import AuditWriter
    from nmdose.web.router import Response

    w = AuditWriter(lambda: connect(scratch))
    observe = routes.make_observer(w)
    resp = Response.json({"rows": [{"study_instance_uid": UID}] * 200, "count": 200})
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        observe(Request("GET", "/api/dose/ct-events", query={"from": "2024-01-01"}), resp, "dose:read")
    per_call_us = (time.perf_counter() - start) / n * 1e6
    assert w.flush(60)
    assert per_call_us < 200, per_call_us
    w.stop()
