"""How one web call becomes one audit row: rows counted in JSON / CSV / XLSX answers, study UIDs found, the
client address behind a proxy, secrets masked, the route pattern; and that the observer sees every non-public
route of the real plugin once and no public one."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest

from nmdose.audit import context, event, routes
from nmdose.audit.event import WebCall, from_web_call
from nmdose.web import xlsx
from nmdose.web.router import PUBLIC, Request, Response, Router
from tests.support import load, make_config_dir
from tests.unit.test_auth import realm_server as realm_server  # the fixture

UIDS = [f"1.2.826.0.1.3680043.8.498.{i}" for i in range(5)]


def call(body: bytes, content_type: str = "application/json", status: int = 200, **kw) -> WebCall:
    base = dict(
        at=dt.datetime.now(dt.UTC), method="GET", path="/api/dose/ct-events", permission="dose:read", query={},
        params={}, headers={}, request_body=b"", user=None, peer="127.0.0.1", status=status,
        content_type=content_type, response_body=body,
    )  # fmt: skip
    base.update(kw)
    return WebCall(**base)


def test_json_rows_and_study_uids():
    rows = [{"study_instance_uid": u, "dlp": 10.0} for u in UIDS] + [{"study_instance_uid": UIDS[0]}]
    e = from_web_call(call(json.dumps({"rows": rows, "count": len(rows)}).encode()))
    assert (e.rows_returned, e.format, e.study_uids, e.study_uids_total) == (6, "json", UIDS, 5)
    assert from_web_call(call(json.dumps(rows[:2]).encode())).rows_returned == 2
    one = {"study": {"study_instance_uid": UIDS[3]}, "ct_events": [{"ordinal": 0}]}
    e = from_web_call(
        call(json.dumps(one).encode(), path=f"/api/dose/study/{UIDS[3]}", params={"uid": UIDS[3]})
    )
    assert (e.rows_returned, e.study_uids, e.action) == (1, [UIDS[3]], "/api/dose/study/{uid}")


def test_study_uids_are_cut_at_the_limit_but_counted():
    rows = [{"study_uid": f"1.2.3.{i}"} for i in range(50)]
    e = from_web_call(call(json.dumps(rows).encode()), max_study_uids=10)
    assert len(e.study_uids) == 10 and e.study_uids_total == 50 and e.rows_returned == 50


def test_csv_records_are_counted_not_lines():
    text = 'study_instance_uid,description\r\n1.2.3.4,"two\r\nlines"\r\n1.2.3.5,plain\r\n1.2.3.4,again\r\n'
    e = from_web_call(call(text.encode("utf-8-sig"), "text/csv; charset=utf-8", query={"format": "csv"}))
    assert (e.rows_returned, e.format, e.study_uids) == (3, "csv", ["1.2.3.4", "1.2.3.5"])
    assert from_web_call(call(b"a,b\r\n", "text/csv")).rows_returned == 0


def test_xlsx_data_rows_of_every_sheet_after_the_summary():
    rows = [{"study_instance_uid": UIDS[i % 3], "acquisition_protocol": ["Head", "Chest"][i % 2], "dlp": i}
            for i in range(7)]  # fmt: skip
    body = xlsx.workbook(rows, title="t", parameters={"from": "2024-01-01"}, group_by="acquisition_protocol",
                         summary=[{"protocol": "Head", "n": 4}], summary_title="s")  # fmt: skip
    e = from_web_call(call(body, xlsx.CONTENT_TYPE, query={"format": "xlsx"}))
    assert (e.rows_returned, e.format) == (7, "xlsx")
    assert sorted(e.study_uids) == sorted(UIDS[:3])


def test_errors_count_no_rows_and_keep_the_message():
    e = from_web_call(call(b'{"error": "user x lacks permission dose:read"}', status=403))
    assert (e.rows_returned, e.outcome, e.status) == (0, "denied", 403)
    assert "lacks permission" in e.detail["error"]
    assert from_web_call(call(b'{"error": "boom"}', status=500)).outcome == "failure"


def test_client_address_behind_a_proxy_and_without():
    headers = {"x-forwarded-for": "10.1.2.3, 192.168.0.9", "X-Real-IP": "192.168.0.9"}
    e = from_web_call(call(b"[]", headers=headers, peer="127.0.0.1"))
    assert (e.client_address, e.peer_address) == ("10.1.2.3", "127.0.0.1")
    assert "X-Forwarded-For: 10.1.2.3, 192.168.0.9" in e.forwarded_for and "X-Real-IP" in e.forwarded_for
    assert from_web_call(call(b"[]", headers={"x-real-ip": "10.9.9.9"})).client_address == "10.9.9.9"
    e = from_web_call(call(b"[]", headers={}, peer="10.0.0.7"))
    assert (e.client_address, e.forwarded_for) == ("10.0.0.7", None)


def test_parameters_masked_and_bodies_never_stored():
    body = json.dumps({"studies": [UIDS[0], "not a uid"], "census": False, "password": "hunter2"}).encode()
    e = from_web_call(
        call(
            b'{"queued": 1}',
            method="POST",
            path="/retrieve",
            query={"access_token": "abc", "from": "2024"},
            request_body=body,
            status=202,
        )  # fmt: skip
    )
    assert e.params == {"access_token": "***", "from": "2024", "body.census": False}
    assert e.study_uids == [UIDS[0]] and "hunter2" not in json.dumps(e.params)


def test_actor_from_the_user():
    user = SimpleNamespace(username="kim", subject="f3c1-uuid", roles=("privacy_officer",))
    e = from_web_call(call(b"[]", user=user))
    assert (e.actor_username, e.actor_subject, e.actor_roles) == ("kim", "f3c1-uuid", ["privacy_officer"])


def test_thread_client_is_taken_once():
    context.remember_client("10.0.0.1")
    assert context.take_client() == "10.0.0.1" and context.take_client() is None


class FakeWriter:
    def __init__(self):
        self.items = []

    def submit(self, item):
        self.items.append(item)


def test_observer_skips_public_routes_and_records_others():
    w = FakeWriter()
    observe = routes.make_observer(w)
    observe(Request("GET", "/health"), Response.json({}), PUBLIC)
    context.remember_client("10.1.1.1")
    observe(Request("GET", "/api/x", user=SimpleNamespace(username="u")), Response.json([1, 2]), "dose:read")
    assert len(w.items) == 1 and w.items[0].peer == "10.1.1.1" and w.items[0].permission == "dose:read"
    assert from_web_call(w.items[0]).rows_returned == 2


def test_install_without_router_observers_wraps_dispatch_once():
    router = Router()
    router.add("GET", "/open", lambda r: Response.json({}), permission=PUBLIC)
    router.add("GET", "/closed/{uid}", lambda r: Response.json([]), permission="dose:read")
    w = FakeWriter()
    plugin = SimpleNamespace(router=router, audit_writer=w, cfg=None)
    routes.install(plugin)
    routes.install(plugin)  # idempotent
    router.dispatch(Request("GET", "/open"))
    router.dispatch(Request("GET", "/closed/1.2.3"))
    router.dispatch(Request("GET", "/nowhere"))
    assert [c.path for c in w.items] == ["/closed/1.2.3"]


def test_install_with_router_observers_appends_once():
    router = Router()
    router.observers = []
    plugin = SimpleNamespace(router=router, audit_writer=FakeWriter(), cfg=None)
    assert routes.install(plugin) and routes.install(plugin)
    assert len(router.observers) == 1


def _placeholder(pattern: str) -> str:
    return pattern.replace("{uid}", "1.2.826.0.1.3680043.8.498.77").replace("{name}", "nmdose.css")


def test_every_non_public_route_of_the_real_plugin_is_observed_once(tmp_path, monkeypatch):
    """Walk the plugin's router (no database: handlers answer 503): one WebCall per non-public route."""
    from nmdose.plugin import Plugin

    w = FakeWriter()
    monkeypatch.setattr(routes, "writer_for", lambda plugin: w)
    plugin = Plugin(load(make_config_dir(tmp_path)))
    router = plugin.router
    routes_seen = {}
    for method, regex, _handler, permission in router.routes:
        pattern = regex.pattern.removeprefix("^").removesuffix("/?$")
        pattern = pattern.replace("(?P<uid>[^/]+)", "{uid}").replace("(?P<name>[^/]+)", "{name}")
        if method != "GET" or "(?P<" in pattern:
            continue  # state-changing routes are walked against a real database (tests/integration)
        routes_seen[pattern] = permission
    assert "/api/audit" in routes_seen and routes_seen["/api/audit"] == "audit:read"
    assert routes_seen.get("/ui/audit") == PUBLIC
    for pattern, permission in routes_seen.items():
        before = len(w.items)
        plugin.handle_rest("GET", _placeholder(pattern), {}, {}, b"")
        expected = 0 if permission == PUBLIC else 1
        assert len(w.items) - before == expected, pattern
        if expected:
            assert event.route_of(w.items[-1].path, w.items[-1].params) == pattern


@pytest.mark.parametrize("content_type,fmt", [("text/html; charset=utf-8", "html"), ("image/png", "other")])
def test_formats_of_non_data_answers(content_type, fmt):
    e = from_web_call(call(b"<html>", content_type))
    assert e.format == fmt and e.rows_returned is None


def test_large_page_answers_are_counted_without_parsing_and_nested_counts_do_not_fool_it():
    rows = [{"study_instance_uid": f"1.2.3.{i % 40}", "sizes": [i], "count": 7, "note": 'x], "count": 9}'}
            for i in range(3000)]  # fmt: skip
    body = json.dumps({"rows": rows, "count": len(rows), "open": 2}).encode()
    assert len(body) > 65536
    e = from_web_call(call(body))
    assert (e.rows_returned, e.study_uids_total) == (3000, 40)
    assert e.study_uids[:2] == ["1.2.3.0", "1.2.3.1"]


# ----- keycloak mode: the token's subject and username, and refused calls, on the rows


def test_keycloak_rows_carry_subject_and_username_and_refusals_are_denied(
    realm_server, tmp_path, monkeypatch
):
    from nmdose.plugin import Plugin
    from tests.unit.test_auth import REALM_KEY, token

    realm, url = realm_server
    realm.keys = {"realm-key": REALM_KEY}
    w = FakeWriter()
    monkeypatch.setattr(routes, "writer_for", lambda plugin: w)
    cfg = load(make_config_dir(tmp_path, keycloak={"issuer": url}, env={"NMDOSE_AUTH_MODE": "keycloak"}))
    plugin = Plugin(cfg)
    officer = token(url, roles=("nmdose-privacy-officer",), sub="5d1c-officer", preferred_username="lee")
    physicist = token(url, sub="9a7b-physicist", preferred_username="park")
    plugin.handle_rest("GET", "/api/audit", {"study": UIDS[0]}, {"authorization": f"Bearer {officer}"}, b"")
    plugin.handle_rest("GET", "/api/audit", {}, {"authorization": f"Bearer {physicist}"}, b"")  # 403
    plugin.handle_rest("GET", "/api/dose/ct-protocols", {}, {}, b"")  # 401
    plugin.handle_rest("GET", "/health", {}, {}, b"")  # public: no row
    rows = [from_web_call(c) for c in w.items]
    assert [(r.actor_username, r.actor_subject, r.status, r.outcome) for r in rows] == [
        ("lee", "5d1c-officer", 503, "failure"),  # no database behind this plugin
        ("park", "9a7b-physicist", 403, "denied"),  # refused, and named
        (None, None, 401, "denied"),
    ]
    assert rows[0].actor_roles == ["privacy_officer"] and rows[0].params == {"study": UIDS[0]}
    assert rows[0].study_uids == []  # reading the trail names nobody's data
