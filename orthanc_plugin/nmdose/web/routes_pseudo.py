"""The pseudoPACS behind the HTTPS proxy (docs/pseudonymise.md "Researchers"): nginx serves the pseudoPACS's
Orthanc Explorer and REST API under `/pseudo/` and asks this route first, for every request (`auth_request`):
`GET /nmdose/api/pseudo/authorize` with the original request's method and path in headers only the proxy sets.

The router authenticates the caller as for every route (bearer token, or the pages' `nmdose_session` cookie) and
checks `pseudo:read`; this handler then decides by what the request would do to the pseudoPACS:

- reads (GET, HEAD, and Orthanc Explorer's searches `POST /tools/find` and `/tools/lookup`): `pseudo:read`;
- anything else (storing, deleting, modifying, jobs, `/tools/*`): also `orthanc:admin`, and never from a page of
  another origin (the cookie authenticates the subrequest, whatever the original method).

The answer is 200 (nginx forwards the request), 401 (no valid credential) or 403; nginx answers the client with
the same status. The audit trail records each call (the router's observer) with the request it authorized
(`detail.authorizes`: method and path, from the proxy's headers); the pseudoPACS holds pseudonymised copies only,
so the row names no study of the research PACS."""

from __future__ import annotations

from nmdose.web.router import HttpError, Request, Response
from nmdose.web.routes import RouteSpec

READ = "pseudo:read"
ADMIN = "orthanc:admin"
PREFIX = "/pseudo"
# Set by the proxy's auth_request location from nginx's own variables (a client's headers of these names are
# replaced): the original method, the normalised path ($uri: decoded, dot segments resolved, what nginx routes
# by) and the request line's target ($request_uri, for the audit trail only).
METHOD_HEADER = "X-Original-Method"
PATH_HEADER = "X-Original-Path"
URI_HEADER = "X-Original-URI"
READ_METHODS = frozenset({"GET", "HEAD"})
# Orthanc Explorer's searches: a POST that reads (Orthanc Book, REST API: /tools/find, /tools/lookup).
READ_POSTS = frozenset({"/tools/find", "/tools/lookup"})


def decide(method: str, path: str, permissions: frozenset[str] | set[str]) -> tuple[bool, str]:
    """(allowed, why) of `method` on the pseudoPACS's `path` (below `/pseudo`) for a holder of `permissions`
    (who already holds pseudo:read)."""
    method = method.upper()
    if method in READ_METHODS or (method == "POST" and path.rstrip("/") in READ_POSTS):
        return True, "read"
    if ADMIN in permissions:
        return True, "admin"
    return (
        False,
        f"{method} {path} changes the pseudoPACS: it needs {ADMIN} (pseudo:read allows reading only)",
    )


def authorize(request: Request, ctx) -> Response:
    method = request.header(METHOD_HEADER).strip().upper()
    path = request.header(PATH_HEADER).strip()
    if not method or not path:
        raise HttpError(400, f"called by the HTTPS proxy's auth_request only ({METHOD_HEADER} and {PATH_HEADER} "
                             "name the request it authorizes)")  # fmt: skip
    if path != PREFIX and not path.startswith(PREFIX + "/"):
        raise HttpError(400, f"{PATH_HEADER} must be below {PREFIX}/, got {path[:200]!r}")
    inner = path[len(PREFIX) :] or "/"
    permissions = frozenset(getattr(request.user, "permissions", ()) or ())
    allowed, why = decide(method, inner, permissions)
    if not allowed:
        raise HttpError(403, why)
    if method not in READ_METHODS:
        _same_origin(request)
    return Response.json({"allowed": True, "as": why})


def _same_origin(request: Request) -> None:
    """A change (or a POST search) must come from a page of this site: the session cookie of the subrequest
    would otherwise let another site's page act for the user (SameSite=Strict covers other sites, not other
    origins of the same site)."""
    if request.header("Sec-Fetch-Site").lower() == "cross-site":
        raise HttpError(403, "cross-site request refused (Sec-Fetch-Site: cross-site)")
    origin = request.header("Origin")
    host = request.header("Host")
    if origin and (not host or origin.split("://", 1)[-1].rstrip("/").lower() != host.lower()):
        raise HttpError(403, f"cross-origin request refused (Origin {origin!r}, Host {host!r})")


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "GET",
        "/api/pseudo/authorize",
        authorize,
        READ,
        "The HTTPS proxy's check of a request to the pseudoPACS (nginx auth_request; changes need orthanc:admin)",
        query={},
        answers={
            400: "not called by the proxy (the X-Original-Method / X-Original-Path headers missing or wrong)",
            403: "the user may not do this to the pseudoPACS",
        },
    ),
)
