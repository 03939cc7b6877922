"""The one router: patterns, methods, errors turned into JSON answers; the browser checks and security headers it
applies to every route; its observers; the permission table of docs/web.md against the plugin's routes."""

import json
import re

import pytest

from nmdose.errors import DatabaseError
from nmdose.web.router import HttpError, Request, Response, Router
from tests.support import REPO, load, make_config_dir


def make_router():
    r = Router()
    r.add("GET", "/studies/{uid}", lambda req: Response.json({"uid": req.params["uid"]}))
    r.add("POST", "/census", lambda req: Response.json({"started": req.json()}, 202))

    def bad(req):
        raise HttpError(400, "parameter 'year' must be a number")

    r.add("GET", "/bad", bad)
    r.add("GET", "/db", lambda req: (_ for _ in ()).throw(DatabaseError("PostgreSQL unreachable")))
    r.add("GET", "/bug", lambda req: 1 / 0)
    return r


def call(router, method, path, body=b""):
    headers = {"Content-Type": "application/json"} if method != "GET" else {}
    resp = router.dispatch(Request(method, path, headers=headers, body=body))
    return resp.status, json.loads(resp.body)


def test_path_parameters_are_passed():
    assert call(make_router(), "GET", "/studies/1.2.3") == (200, {"uid": "1.2.3"})


def test_unknown_route_is_404_and_wrong_method_405():
    r = make_router()
    assert call(r, "GET", "/nothing")[0] == 404
    assert call(r, "DELETE", "/census") == (405, {"error": "method not allowed; use POST"})


def test_errors_become_json_answers_not_crashes():
    r = make_router()
    assert call(r, "GET", "/bad") == (400, {"error": "parameter 'year' must be a number"})
    assert call(r, "GET", "/db") == (503, {"error": "PostgreSQL unreachable"})
    assert call(r, "GET", "/bug") == (500, {"error": "internal error: ZeroDivisionError"})
    assert call(r, "POST", "/census", b"{not json")[0] == 400
    assert call(r, "POST", "/census", b'{"from": "2020-01-01"}') == (202, {"started": {"from": "2020-01-01"}})


def test_authenticate_runs_before_every_handler():
    seen = []

    def auth(req, permission):
        seen.append(permission)
        if req.headers.get("authorization") != "Bearer ok":
            raise HttpError(401, "missing or invalid bearer token")
        return "alice"

    r = Router(authenticate=auth)
    r.add("GET", "/x", lambda req: Response.json({"user": req.user}), permission="dose:read")
    assert r.dispatch(Request("GET", "/x")).status == 401
    ok = r.dispatch(Request("GET", "/x", headers={"authorization": "Bearer ok"}))
    assert json.loads(ok.body) == {"user": "alice"} and seen == ["dose:read", "dose:read"]


# ----- browser hardening, observers, export permission (docs/web.md "Browser hardening") ---------------------


def guarded_router(auth=None):
    r = Router(authenticate=auth)
    done = []

    def start(req):
        done.append(req.json())
        return Response.json({"queued": True}, 202)

    r.add("POST", "/retrieve", start, permission="retrieve:run")
    r.add(
        "GET",
        "/api/x",
        lambda req: Response.json({"rows": []}),
        permission="dose:read",
        export_permission="x:export",
    )
    r.add(
        "GET",
        "/static/{name}",
        lambda req: Response(200, b"js", "text/javascript", {"Cache-Control": "max-age=3600"}),
    )
    return r, done


SAME = {"Host": "127.0.0.1:8042", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (
            {"Host": "127.0.0.1:8042", "Origin": "http://evil.example", "Content-Type": "application/json"},
            403,
        ),
        (
            {"Host": "127.0.0.1:8042", "Origin": "http://127.0.0.1:8043", "Content-Type": "application/json"},
            403,
        ),
        ({"Host": "127.0.0.1:8042", "Origin": "null", "Content-Type": "application/json"}, 403),
        ({**SAME, "Sec-Fetch-Site": "cross-site"}, 403),
        ({"Host": "127.0.0.1:8042", "Origin": "http://127.0.0.1:8042", "Content-Type": "text/plain"}, 415),
        ({"Host": "127.0.0.1:8042", "Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Host": "127.0.0.1:8042"}, 415),
    ],
)
def test_a_state_changing_request_from_another_origin_or_not_json_is_refused_before_anything_runs(
    headers, status
):
    seen = []
    r, done = guarded_router(lambda req, perm: seen.append(perm) or "dev")
    resp = r.dispatch(Request("POST", "/retrieve", headers=headers, body=b'{"census": true}'))
    assert resp.status == status and done == [] and seen == []  # neither the handler nor the auth ran
    assert "error" in json.loads(resp.body)


@pytest.mark.parametrize(
    "headers",
    [
        SAME,
        {**SAME, "Origin": "http://127.0.0.1:8042", "Sec-Fetch-Site": "same-origin"},
        {
            "host": "pacs.hospital",
            "origin": "https://PACS.hospital",
            "content-type": "application/json; charset=utf-8",
        },
        {"host": "pacs.hospital:443", "origin": "https://pacs.hospital", "content-type": "application/json"},
    ],
)
def test_a_same_origin_json_request_passes(headers):
    r, done = guarded_router()
    resp = r.dispatch(Request("POST", "/retrieve", headers=headers, body=b'{"census": true}'))
    assert resp.status == 202 and done == [{"census": True}]


def test_every_answer_carries_the_security_headers_and_no_store_unless_the_route_says_otherwise():
    r, _ = guarded_router()
    for resp in (
        r.dispatch(Request("GET", "/api/x")),
        r.dispatch(Request("GET", "/api/x", query={"format": "csv"})),
        r.dispatch(Request("GET", "/nothing")),
        r.dispatch(Request("POST", "/retrieve", headers={"Origin": "http://evil"})),
    ):
        assert resp.headers["Cache-Control"] == "no-store"
        assert (
            resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["X-Frame-Options"] == "DENY"
        )
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.dispatch(Request("GET", "/static/a.js")).headers["Cache-Control"] == "max-age=3600"


def test_the_csp_lets_the_pages_reach_the_identity_provider_of_the_authenticator():
    class Auth:
        connect_origins = ("https://kc.hospital:8443",)

        def __call__(self, req, perm):
            return None

    csp = Router(authenticate=Auth()).dispatch(Request("GET", "/x")).headers["Content-Security-Policy"]
    assert csp.endswith("; connect-src 'self' https://kc.hospital:8443") and "default-src 'self'" in csp


def test_an_export_asks_the_export_permission_and_observers_see_every_route_with_its_permission(caplog):
    asked = []
    r, _ = guarded_router(lambda req, perm: asked.append(perm) or "kim")
    seen = []
    r.observers.append(lambda req, resp, perm: seen.append((req.path, resp.status, perm, req.user)))
    r.observers.append(lambda req, resp, perm: 1 / 0)  # a broken observer changes nothing
    assert r.dispatch(Request("GET", "/api/x")).status == 200
    assert r.dispatch(Request("GET", "/api/x", query={"format": "xlsx"})).status == 200
    assert r.dispatch(Request("GET", "/api/x", query={"format": "json"})).status == 200
    assert r.dispatch(Request("POST", "/retrieve", headers={"Origin": "http://evil"})).status == 403
    assert asked == ["dose:read", "x:export", "dose:read"]
    assert seen == [
        ("/api/x", 200, "dose:read", "kim"),
        ("/api/x", 200, "x:export", "kim"),
        ("/api/x", 200, "dose:read", "kim"),
        ("/retrieve", 403, "retrieve:run", None),
    ]
    assert "ZeroDivisionError" in caplog.text


# ----- every route of the plugin is in the permission table of docs/web.md, and nothing else -----------------


def documented_routes() -> set[tuple[str, str, str]]:
    text = (REPO / "docs" / "web.md").read_text()
    section = text.split("\n## Permissions\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (GET|POST|PUT|DELETE) \| (\S+) \| ([^|]+) \|$", section, re.MULTILINE)
    return {(m, p, perm.strip()) for m, p, perm in rows}


def registered_routes(router) -> set[tuple[str, str, str]]:
    out = set()
    for route in router.table:
        perm = route.permission or "authenticated"
        if route.pattern == "/health":
            perm += " (the details: authenticated)"
        if route.export_permission:
            perm += f"; csv/xlsx: {route.export_permission}"
        out.add((route.method, "/nmdose" + route.pattern, perm))
    return out


def test_every_route_of_the_plugin_is_in_the_permission_table_and_every_row_is_a_route(tmp_path):
    from nmdose.plugin import Plugin

    router = Plugin(load(make_config_dir(tmp_path))).router
    assert len(router.table) >= 30
    documented, registered = documented_routes(), registered_routes(router)
    assert registered - documented == set(), "routes missing from docs/web.md (Permissions)"
    assert documented - registered == set(), "rows of docs/web.md (Permissions) that are no route"
    assert len(documented) == len(router.table)  # one row per route
