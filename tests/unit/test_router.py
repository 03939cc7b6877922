"""The one router: patterns, methods, errors turned into JSON answers."""

import json

from nmdose.errors import DatabaseError
from nmdose.web.router import HttpError, Request, Response, Router


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
    resp = router.dispatch(Request(method, path, body=body))
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
