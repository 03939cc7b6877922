"""One router for every `/nmdose/...` route: method + path pattern -> handler(request) -> response.

Authentication, audit logging and error handling wrap the router once (:meth:`Router.dispatch`), so handlers
deal with none of them. Nothing here knows it runs inside Orthanc.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nmdose.errors import NmdoseError

log = logging.getLogger("nmdose.web")

# Permission of routes anyone may call, also in keycloak mode (e.g. /health for monitoring).
PUBLIC = "public"


@dataclass
class Request:
    method: str
    path: str  # below /nmdose, e.g. "/health"
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)  # from the path pattern
    user: Any = None

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise HttpError(400, "request body is not valid JSON") from None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Orthanc sends a body of another status than 200 without a Content-Type of its own: name it here.
        if self.status not in (200, 401, 405) and self.body:
            self.headers.setdefault("Content-Type", self.content_type)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(data, ensure_ascii=False, default=str).encode(), "application/json")

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), "text/html; charset=utf-8")


class HttpError(Exception):
    """Raised by handlers (or the auth layer) to answer an HTTP error with a JSON message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[[Request], Response]


class Router:
    def __init__(self, authenticate: Callable[[Request], Any] | None = None):
        self.routes: list[tuple[str, re.Pattern[str], Handler, str | None]] = []
        self.authenticate = authenticate

    def add(self, method: str, pattern: str, handler: Handler, *, permission: str | None = None) -> None:
        """`pattern` uses {name} for one path segment, e.g. "/forward/studies/{uid}"."""
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$"
        self.routes.append((method.upper(), re.compile(regex), handler, permission))

    def route(self, method: str, pattern: str, *, permission: str | None = None):
        def deco(fn: Handler) -> Handler:
            self.add(method, pattern, fn, permission=permission)
            return fn

        return deco

    def dispatch(self, request: Request) -> Response:
        allowed = []
        for method, regex, handler, permission in self.routes:
            m = regex.match(request.path)
            if not m:
                continue
            if method != request.method.upper():
                allowed.append(method)
                continue
            request.params = m.groupdict()
            try:
                if self.authenticate is not None:
                    request.user = self.authenticate(request, permission)
                response = handler(request)
            except HttpError as exc:
                response = Response.json({"error": exc.message}, exc.status)
            except NmdoseError as exc:
                response = Response.json({"error": str(exc)}, 503)
            except Exception as exc:  # a bug must answer 500 and be logged, never take Orthanc down
                log.exception("nmdose route %s %s failed", request.method, request.path)
                response = Response.json({"error": f"internal error: {type(exc).__name__}"}, 500)
            if request.method.upper() != "GET" or response.status >= 400:
                log.info(
                    "%s %s -> %s user=%s",
                    request.method,
                    request.path,
                    response.status,
                    getattr(request.user, "username", request.user),
                )
            return response
        if allowed:
            methods = ", ".join(sorted(set(allowed)))
            response = Response.json({"error": f"method not allowed; use {methods}"}, 405)
            response.headers["Allow"] = methods
            return response
        return Response.json({"error": f"no such nmdose route: {request.path}"}, 404)
