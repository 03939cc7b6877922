"""One router for every `/nmdose/...` route: method + path pattern -> handler(request) -> response.

Authentication, the browser checks of state-changing requests, the security headers, logging, error handling
and the observers (the audit trail plugs in there) wrap the router once (:meth:`Router.dispatch`), so handlers
deal with none of them. Nothing here knows it runs inside Orthanc.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from nmdose.errors import NmdoseError
from nmdose.web.params import Param, ParamError, parse_params

log = logging.getLogger("nmdose.web")

# Permission of routes anyone may call, also in keycloak mode (e.g. /health for monitoring).
PUBLIC = "public"
# Permission of routes any authenticated user may call, whatever their roles (e.g. POST /session).
AUTHENTICATED = "authenticated"
# Methods that change nothing: the only ones a session cookie may authenticate, and the only ones a page of
# another origin may send (every other method needs the same-origin and Content-Type checks below).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
EXPORT_FORMATS = frozenset({"csv", "xlsx"})
# Bodies a state-changing request may carry besides JSON: the files of an upload (the research projects). Like
# JSON, a page of another site cannot send them without a CORS preflight (which nmdose never answers), unlike
# multipart/form-data, which stays refused. A route that reads JSON answers 400 to them (not JSON).
FILE_TYPES = frozenset({"application/zip", "application/dicom"})

# A DICOM UID (PS3.5 9.1): digit groups separated by dots, at most 64 characters.
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")

# Pages may load only our own scripts, styles and images (no inline script), never be framed.
CSP_BASE = "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'"


def content_security_policy(connect_origins: Iterable[str] = ()) -> str:
    """The CSP of every answer; `connect_origins`: other origins the pages' scripts call (the OIDC issuer)."""
    extra = " ".join(dict.fromkeys(o for o in connect_origins if o))
    return CSP_BASE + (f"; connect-src 'self' {extra}" if extra else "")


def header(headers: Mapping[str, str], name: str) -> str:
    """A request header by case-insensitive name ('' when absent): Orthanc hands them over lower-cased,
    tests and other callers may not."""
    value = headers.get(name) or headers.get(name.lower())
    if value is None:
        lname = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lname), "")
    return value or ""


def check_uid(value: Any, what: str = "StudyInstanceUID") -> str:
    """`value` if it is a DICOM UID (digits and dots, at most 64 characters), else HttpError 400."""
    if isinstance(value, str) and len(value) > 64:
        raise HttpError(400, f"{what} must be a DICOM UID of at most 64 characters, got {len(value)}")
    if not isinstance(value, str) or not UID_RE.match(value):
        raise HttpError(400, f"{what} must be a DICOM UID (digits separated by dots), got {value!r}")
    return value


@dataclass
class Request:
    method: str
    path: str  # below /nmdose, e.g. "/health"
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)  # from the path pattern
    user: Any = None
    args: dict[str, Any] = field(default_factory=dict)  # the query, validated by the route's `query` spec
    data: Any = None  # the JSON body, validated by the route's `body` schema

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise HttpError(400, "request body is not valid JSON") from None

    def header(self, name: str) -> str:
        return header(self.headers, name)


@dataclass
class Response:
    """An answer. `audit`: what the handler adds to the call's audit row (its `detail`; never sent), e.g. what a
    state-changing route changed when its body is not recorded (the audit trail records no request body)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)

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
Observer = Callable[[Request, Response, "str | None"], None]


@dataclass(frozen=True)
class Route:
    """One registered route: `permission` gates it; `export_permission` (when set) gates its CSV/XLSX answers
    (`format=csv|xlsx`) instead.

    `query`: the query parameters it accepts (validated before the handler runs, into `request.args`; None: the
    route reads no query and ignores one, e.g. a page the OIDC login returns to with `?code=`). `body`: the JSON
    schema of its request body, when one is sent (validated into `request.data`, else None; a subset of JSON
    schema, see :func:`check_json`).
    `summary` and `answers` ({status: text}) describe it in the OpenAPI description (web/openapi.py)."""

    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler
    permission: str | None
    export_permission: str | None = None
    query: Mapping[str, Param] | None = None
    body: Mapping[str, Any] | None = None
    summary: str = ""
    answers: Mapping[int, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def permission_for(self, request: Request) -> str | None:
        if self.export_permission and request.query.get("format") in EXPORT_FORMATS:
            return self.export_permission
        return self.permission


def _host_port(scheme: str, netloc: str) -> str:
    """host:port, lower-case, with the scheme's default port made explicit."""
    netloc = netloc.strip().lower()
    host, sep, port = netloc.rpartition(":")
    if not sep or "]" in port:  # no port (an IPv6 literal's colons are inside the brackets)
        host, port = netloc, {"https": "443"}.get(scheme, "80")
    return f"{host}:{port}"


def check_browser_request(request: Request) -> None:
    """A state-changing request must come from our own pages (same origin) and carry JSON: a page of another
    site can send a `text/plain` or form POST without a CORS preflight, and the browser would add the session
    cookie of a same-site origin. HttpError 403 (other origin) or 415 (not JSON)."""
    site = request.header("Sec-Fetch-Site").lower()
    if site == "cross-site":
        raise HttpError(403, "cross-site request refused (Sec-Fetch-Site: cross-site)")
    origin = request.header("Origin")
    if origin:
        parts = urlsplit(origin)
        host = request.header("Host")
        if (
            not parts.netloc
            or not host
            or _host_port(parts.scheme, parts.netloc) != _host_port(parts.scheme, host)
        ):
            raise HttpError(403, f"cross-origin request refused (Origin {origin!r}, Host {host!r})")
    ctype = request.header("Content-Type").split(";")[0].strip().lower()
    if ctype != "application/json" and ctype not in FILE_TYPES:
        raise HttpError(415, f"Content-Type must be application/json, got {ctype or 'none'!r}")


class Router:
    def __init__(self, authenticate: Callable[[Request, str | None], Any] | None = None):
        self._routes: list[Route] = []
        self.authenticate = authenticate
        # Called after every dispatched route with (request, response, permission asked); an exception in one
        # is logged and swallowed, never changes the answer.
        self.observers: list[Observer] = []
        self.csp = content_security_policy(getattr(authenticate, "connect_origins", ()))

    @property
    def routes(self) -> list[tuple[str, re.Pattern[str], Handler, str | None]]:
        """(method, regex, handler, permission) of each route, in registration order."""
        return [(r.method, r.regex, r.handler, r.permission) for r in self._routes]

    @property
    def table(self) -> list[Route]:
        """Every registered route with its pattern and permissions (docs/web.md lists them)."""
        return list(self._routes)

    def add(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        permission: str | None = None,
        export_permission: str | None = None,
        query: Mapping[str, Param] | None = None,
        body: Mapping[str, Any] | None = None,
        summary: str = "",
        answers: Mapping[int, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        """`pattern` uses {name} for one path segment, e.g. "/forward/studies/{uid}"; the other arguments are
        those of :class:`Route`."""
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$")
        self._routes.append(
            Route(
                method.upper(),
                pattern,
                regex,
                handler,
                permission,
                export_permission,
                query,
                body,
                summary,
                dict(answers or {}),
                content_type,
            )
        )

    def route(self, method: str, pattern: str, *, permission: str | None = None):
        def deco(fn: Handler) -> Handler:
            self.add(method, pattern, fn, permission=permission)
            return fn

        return deco

    def dispatch(self, request: Request) -> Response:
        allowed = []
        for route in self._routes:
            m = route.regex.match(request.path)
            if not m:
                continue
            if route.method != request.method.upper():
                allowed.append(route.method)
                continue
            request.params = m.groupdict()
            permission = route.permission_for(request)
            response = self._run(route, request, permission)
            self._harden(response)
            if request.method.upper() != "GET" or response.status >= 400:
                log.info(
                    "%s %s -> %s user=%s",
                    request.method,
                    request.path,
                    response.status,
                    getattr(request.user, "username", request.user),
                )
            self._notify(request, response, permission)
            return response
        if allowed:
            methods = ", ".join(sorted(set(allowed)))
            response = Response.json({"error": f"method not allowed; use {methods}"}, 405)
            response.headers["Allow"] = methods
            return self._harden(response)
        return self._harden(Response.json({"error": f"no such nmdose route: {request.path}"}, 404))

    def _run(self, route: Route, request: Request, permission: str | None) -> Response:
        try:
            if request.method.upper() not in SAFE_METHODS:
                check_browser_request(request)
            if self.authenticate is not None:
                request.user = self.authenticate(request, permission)
            if route.query is not None:
                try:
                    request.args = parse_params(request.query, route.query)
                except ParamError as exc:
                    raise HttpError(400, str(exc)) from None
            if route.body is not None and request.body:  # no body: the handler's defaults
                request.data = check_json(request.json(), route.body, "body")
            return route.handler(request)
        except HttpError as exc:
            return Response.json({"error": exc.message}, exc.status)
        except NmdoseError as exc:
            return Response.json({"error": str(exc)}, 503)
        except Exception as exc:  # a bug must answer 500 and be logged, never take Orthanc down
            log.exception("nmdose route %s %s failed", request.method, request.path)
            return Response.json({"error": f"internal error: {type(exc).__name__}"}, 500)

    def _harden(self, response: Response) -> Response:
        """Headers of every answer: no caching unless the handler said otherwise (patient data must not stay in
        a browser or proxy cache; static files set their own max-age), the CSP, no MIME sniffing, no framing."""
        h = response.headers
        h.setdefault("Cache-Control", "no-store")
        h.setdefault("Content-Security-Policy", self.csp)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        return response

    def _notify(self, request: Request, response: Response, permission: str | None) -> None:
        for observer in list(self.observers):
            try:
                observer(request, response, permission)
            except Exception:
                log.exception("nmdose: observer %r failed on %s %s", observer, request.method, request.path)


def check_json(value: Any, schema: Mapping[str, Any], where: str) -> Any:
    """`value` if it matches `schema`, else HttpError 400 naming the first mismatch. The subset of JSON schema
    the routes' bodies use: type (object, array, string, integer, number, boolean, null; a list of them),
    properties, required, additionalProperties (false), items, enum, pattern, maxLength, minItems, maxItems,
    minimum, maximum."""
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, t) for t in allowed):
            got = "nothing" if value is None else type(value).__name__
            raise HttpError(400, f"{where} must be {' or '.join(allowed)}, got {got}")
    if "enum" in schema and value not in schema["enum"]:
        raise HttpError(
            400, f"{where} must be one of {', '.join(map(str, schema['enum']))}, got {value!r:.80}"
        )
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise HttpError(400, f"{where} is longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise HttpError(400, f"{where} does not match {schema['pattern']}, got {value!r:.80}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise HttpError(400, f"{where} must be at least {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            raise HttpError(400, f"{where} must be at most {schema['maximum']}, got {value}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            lo, hi = schema.get("minItems", 0), schema.get("maxItems", "any")
            raise HttpError(400, f"{where} must hold {lo} to {hi} items, got {len(value)}")
        if "items" in schema:
            for i, item in enumerate(value):
                check_json(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise HttpError(400, f"{where} lacks '{name}'")
        if schema.get("additionalProperties") is False:
            unknown = sorted(set(value) - set(props))
            if unknown:
                raise HttpError(400, f"{where} has unknown field '{unknown[0]}' (known: {', '.join(props)})")
        for name, sub in props.items():
            if name in value:
                check_json(value[name], sub, f"'{name}'")
    return value


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(
        value, {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}[name]
    )
