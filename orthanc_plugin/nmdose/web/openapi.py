"""The OpenAPI 3.0 description of every `/nmdose/` route, built from the router's table (`GET
/nmdose/api/openapi.json`): one declaration per route (web/router.py `Router.add`) serves the dispatch, the
validation of its query and body, and this description, so they cannot drift apart.

Each operation names the permission it needs (`x-permission`, and `x-export-permission` for the CSV/XLSX answers
of a route that has one) and how to present it (a bearer token or the session cookie; none for `public` routes).
`make test` fuzzes the running plugin against this description with schemathesis
(tests/integration/test_openapi_fuzz.py): no answer may be a 5xx.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from nmdose.web.router import AUTHENTICATED, PUBLIC, UID_RE, Route

COOKIE_NAME = (
    "nmdose_session"  # nmdose.auth.COOKIE (auth sits above this module; test_openapi checks they agree)
)

# Path parameters by name: every pattern uses one of these.
PATH_PARAMETERS: Mapping[str, Mapping[str, Any]] = {
    "uid": {
        "type": "string",
        "pattern": UID_RE.pattern,
        "maxLength": 64,
        "description": "a StudyInstanceUID",
    },
    "name": {"type": "string", "maxLength": 128, "description": "a file name of the static folder"},
}

# Answers every route may give besides its own.
COMMON_ANSWERS: Mapping[int, str] = {
    503: "a service nmdose needs (PostgreSQL, a PACS) is unreachable; the message names it",
}
AUTH_ANSWERS: Mapping[int, str] = {
    401: "no valid bearer token or session cookie (keycloak mode)",
    403: "the token lacks the permission (`x-permission`), or a state-changing request from another origin",
}
WRITE_ANSWERS: Mapping[int, str] = {
    403: "a request from another origin (Origin or Sec-Fetch-Site)",
    415: "Content-Type is not application/json",
}
ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def _operation_id(route: Route) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", route.pattern.replace("{", "by_").replace("}", "")).strip("_")
    return f"{route.method.lower()}_{words or 'root'}"


def _parameters(route: Route) -> list[dict[str, Any]]:
    out = []
    for name in re.findall(r"\{(\w+)\}", route.pattern):
        schema = dict(PATH_PARAMETERS.get(name, {"type": "string"}))
        description = schema.pop("description", "")
        out.append(
            {"name": name, "in": "path", "required": True, "schema": schema, "description": description}
        )
    for name, param in (route.query or {}).items():
        out.append(
            {
                "name": name,
                "in": "query",
                "required": param.required,
                "schema": dict(param.schema),
                "description": param.description,
            }
        )
    return out


def _answers(route: Route) -> dict[str, Any]:
    own = dict(route.answers)
    answers: dict[str, Any] = {}
    if not any(200 <= status < 300 for status in own):
        own[200] = route.summary or "OK"
    if route.query is not None or route.body is not None or "{" in route.pattern:
        own.setdefault(400, "a parameter or the body is malformed; the message names it")
    if route.method not in ("GET", "HEAD", "OPTIONS"):
        for status, text in WRITE_ANSWERS.items():
            own.setdefault(status, text)
    if route.permission != PUBLIC:
        for status, text in AUTH_ANSWERS.items():
            own.setdefault(status, text)
    for status, text in COMMON_ANSWERS.items():
        own.setdefault(status, text)
    for status in sorted(own):
        text = own[status]
        if 200 <= status < 300:
            ctype = route.content_type.split(";")[0]
            content: dict[str, Any] = {
                ctype: {"schema": {"type": "object"}} if ctype == "application/json" else {}
            }
            if route.export_permission:
                content["text/csv"] = {}
                content["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"] = {}
            answers[str(status)] = {"description": text, "content": content}
        elif 300 <= status < 400:
            answers[str(status)] = {"description": text}
        else:
            answers[str(status)] = {
                "description": text,
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            }
    return answers


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "parameters": _parameters(route),
        "responses": _answers(route),
        "x-permission": route.permission,
    }
    if route.export_permission:
        op["x-export-permission"] = route.export_permission
    if route.permission == PUBLIC:
        op["security"] = []
    if route.body is not None:
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": dict(route.body)}},
        }
    tag = route.pattern.strip("/").split("/")[0]
    if tag == "api":
        tag = "/".join(route.pattern.strip("/").split("/")[:2])
    op["tags"] = [tag]
    return op


def describe(routes: Iterable[Route], *, version: str = "0", server: str = "/nmdose") -> dict[str, Any]:
    """The OpenAPI 3.0 document of `routes` (a router's `table`), paths relative to `server`."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.pattern, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "nmdose",
            "version": version,
            "description": (
                "The research PACS plugin's routes. Permissions are Keycloak roles (docs/security.md); "
                f"`{PUBLIC}` routes need none, `{AUTHENTICATED}` ones any signed-in user. In dev mode every "
                "request is let in."
            ),
        },
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME},
            }
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }
