"""The OpenAPI description built from the router's table, and the router's validation of the declared query and
body (the same declarations): unknown or malformed parameters and bodies of the wrong shape answer 400."""

import json

import pytest

from nmdose import auth
from nmdose.web.openapi import COOKIE_NAME, describe
from nmdose.web.params import TEXT, Choice, Int
from nmdose.web.router import PUBLIC, Request, Response, Router
from tests.support import load, make_config_dir


@pytest.fixture(scope="module")
def plugin_router(tmp_path_factory):
    from nmdose.plugin import Plugin

    return Plugin(load(make_config_dir(tmp_path_factory.mktemp("openapi")))).router


def call(router, method, path, *, query=None, body=b""):
    headers = {"Content-Type": "application/json"} if method != "GET" else {}
    resp = router.dispatch(Request(method, path, dict(query or {}), headers, body))
    return resp.status, json.loads(resp.body)


def test_every_route_is_described_with_its_permission_summary_and_parameters(plugin_router):
    doc = describe(plugin_router.table)
    assert doc["openapi"].startswith("3.0")
    operations = [(p, m, op) for p, ops in doc["paths"].items() for m, op in ops.items()]
    assert len(operations) == len(plugin_router.table) >= 30
    ids = [op["operationId"] for _, _, op in operations]
    assert len(set(ids)) == len(ids)
    for path, method, op in operations:
        assert op["summary"], f"{method.upper()} {path} has no summary"
        assert op["x-permission"], f"{method.upper()} {path} names no permission"
        if op["x-permission"] == PUBLIC:
            assert op["security"] == []
        else:
            assert "401" in op["responses"] and "403" in op["responses"]
        for name in (s.strip("{}") for s in path.split("/") if s.startswith("{")):
            assert any(p["in"] == "path" and p["name"] == name and p["required"] for p in op["parameters"])
    # The JSON API routes that read a query declare it (an unknown parameter is a 400 for them); the dose
    # answers are exports too (an acknowledgement, a POST, is not).
    for route in plugin_router.table:
        if (
            route.method == "GET"
            and route.pattern.startswith("/api/dose/")
            and route.pattern != "/api/dose/study/{uid}"
        ):
            assert route.query, f"{route.pattern} declares no query"
            assert route.export_permission == "dose:export"
    box = doc["paths"]["/api/dose/box"]["get"]
    measure = next(p for p in box["parameters"] if p["name"] == "measure")
    assert measure["schema"]["enum"] and measure["in"] == "query"
    census = doc["paths"]["/census"]["post"]
    assert census["requestBody"]["content"]["application/json"]["schema"]["type"] == "object"
    assert "202" in census["responses"] and "200" not in census["responses"]
    assert doc["paths"]["/api/dose/ct-events"]["get"]["x-export-permission"] == "dose:export"
    json.dumps(doc)  # serialisable as it is served


def test_the_cookie_scheme_names_the_session_cookie():
    assert COOKIE_NAME == auth.COOKIE


def test_declared_query_is_validated_before_the_handler():
    seen = []
    r = Router()
    r.add(
        "GET",
        "/things",
        lambda req: seen.append(req.args) or Response.json(req.args),
        permission=PUBLIC,
        query={"limit": Int(1, 10), "kind": Choice("a", "b")},
        summary="things",
    )
    assert call(r, "GET", "/things", query={"limit": "3", "kind": "a"}) == (200, {"limit": 3, "kind": "a"})
    assert call(r, "GET", "/things", query={"limit": "0"}) == (
        400,
        {"error": "parameter 'limit' must be between 1 and 10, got 0"},
    )
    status, body = call(r, "GET", "/things", query={"nope": "1"})
    assert status == 400 and "unknown parameter 'nope'" in body["error"]
    assert seen == [{"limit": 3, "kind": "a"}]  # the handler never saw a bad query


def test_a_text_parameter_with_a_nul_character_is_400_not_a_database_error():
    r = Router()
    r.add("GET", "/t", lambda req: Response.json(req.args), permission=PUBLIC, query={"station": TEXT})
    assert call(r, "GET", "/t", query={"station": "CT1"}) == (200, {"station": "CT1"})
    assert call(r, "GET", "/t", query={"station": "CT\x001"}) == (
        400,
        {"error": "parameter 'station' contains a NUL character"},
    )


def test_declared_body_is_validated_a_list_where_an_object_is_expected_is_400():
    r = Router()
    schema = {
        "type": "object",
        "properties": {
            "studies": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 2}
        },
        "additionalProperties": False,
    }
    r.add("POST", "/go", lambda req: Response.json({"data": req.data}, 202), permission=PUBLIC, body=schema)
    assert call(r, "POST", "/go", body=b'{"studies": ["1.2"]}') == (202, {"data": {"studies": ["1.2"]}})
    assert call(r, "POST", "/go") == (202, {"data": None})  # no body: the handler's defaults
    assert call(r, "POST", "/go", body=b"[1, 2]") == (400, {"error": "body must be object, got list"})
    assert call(r, "POST", "/go", body=b'{"x": 1}')[0] == 400
    assert call(r, "POST", "/go", body=b'{"studies": "1.2"}') == (
        400,
        {"error": "'studies' must be array, got str"},
    )
    assert call(r, "POST", "/go", body=b'{"studies": ["1", "2", "3"]}')[0] == 400
    assert call(r, "POST", "/go", body=b'{"studies": ["123456"]}')[0] == 400


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/census", b"[]"),
        ("/census", b'["2020-01-01"]'),
        ("/census", b'{"from": 20200101}'),
        ("/retrieve", b"[]"),
        ("/retrieve", b'{"studies": "1.2.3"}'),
        ("/forward/studies/1.2.3", b"[true]"),
        ("/forward/studies/1.2.3", b'{"force": "yes"}'),
    ],
)
def test_the_plugins_write_routes_refuse_a_body_of_the_wrong_shape_with_400(plugin_router, path, body):
    # Router.dispatch itself, not the audit trail's wrapper (no database here); the handlers never run.
    headers = {"Content-Type": "application/json"}
    resp = Router.dispatch(plugin_router, Request("POST", path, {}, headers, body))
    status, answer = resp.status, json.loads(resp.body)
    assert status == 400, answer
    assert answer["error"]
