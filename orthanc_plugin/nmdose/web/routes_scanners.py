"""The scanners' routes (`/nmdose/api/scanners...`, issue 16 item 2 and issue 19 "scanners side by side"): the list
of scanners with their study counts and the names seen, renaming and merging (config:write; the audit trail
records each call with its body), one measure's statistics per scanner, and the page `/nmdose/ui/scanners`.

`{name}` is the scanner_id (the route walks of the audit tests know the path parameters `uid` and `name`)."""

from __future__ import annotations

import unicodedata

from nmdose.web import cache, shell, sql_dose, sql_scanners
from nmdose.web.export import answer
from nmdose.web.params import FORMAT, Choice
from nmdose.web.router import PUBLIC, HttpError, Request, Response
from nmdose.web.routes import HTML, Context, RouteSpec
from nmdose.web.routes_dose import FILTERS

MAX_ID = 2_147_483_647


def scanner_id(value: object) -> int:
    """The path's scanner id, else HttpError 400."""
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 10 or not 0 < int(text) <= MAX_ID:
        raise HttpError(400, f"a scanner is named by its id (a positive integer), got {text[:40]!r}")
    return int(text)


def check_name(value: object) -> str:
    """A display name: 1 to 200 characters after trimming, no control characters; else HttpError 400."""
    if not isinstance(value, str):
        raise HttpError(400, "'display_name' must be a text")
    name = " ".join(value.split())
    if not name:
        raise HttpError(400, "'display_name' is empty")
    if len(name) > 200:
        raise HttpError(400, f"'display_name' is longer than 200 characters ({len(name)})")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in name):
        raise HttpError(400, "'display_name' holds a control or unassigned character")
    return name


def _user(request: Request) -> str | None:
    return getattr(request.user, "username", None) or (str(request.user) if request.user else None)


def scanners(request: Request, ctx: Context) -> Response:
    f = request.args
    with ctx.db() as conn:
        if f.get("format", "json") != "json":
            got = sql_scanners.scanners(conn)
        else:
            got = cache.cached_rows(
                conn, cache.cache_key("scanners", {}), lambda: sql_scanners.scanners(conn)
            )
    return answer(got, f, "scanners")


def rename(request: Request, ctx: Context) -> Response:
    sid = scanner_id(request.params["name"])
    body = request.data or {}
    if "display_name" not in body:
        raise HttpError(400, "body lacks 'display_name'")
    name = check_name(body["display_name"])
    with ctx.db() as conn:
        if not sql_scanners.rename(conn, sid, name, _user(request)):
            raise HttpError(404, f"no scanner {sid}")
    return Response.json({"scanner_id": sid, "display_name": name})


def merge(request: Request, ctx: Context) -> Response:
    sid = scanner_id(request.params["name"])
    body = request.data or {}
    if "into" not in body:
        raise HttpError(400, "body lacks 'into' (the scanner to merge into, or null to undo a merge)")
    into = body["into"]
    if into is not None:
        into = scanner_id(into)
        if into == sid:
            raise HttpError(400, "a scanner cannot be merged into itself")
    with ctx.db() as conn:
        try:
            done = sql_scanners.merge(conn, sid, into)
        except sql_scanners.Refused as exc:
            raise HttpError(409, str(exc)) from None
    if not done:
        raise HttpError(404, f"no scanner {sid}" + ("" if into is None else f" or {into}"))
    return Response.json({"scanner_id": sid, "merged_into": into})


def side_by_side(request: Request, ctx: Context) -> Response:
    f = request.args
    measure = f["measure"]

    def compute():
        return sql_scanners.side_by_side(conn, sql_dose.resolve_agent(conn, f), measure)

    with ctx.db() as conn:
        if f.get("format", "json") != "json":
            got = compute()
        else:
            got = cache.cached_rows(conn, cache.cache_key("scanners_side_by_side", f), compute)
    return answer(got, f, f"scanners-{measure}")


def page(request: Request, ctx: Context) -> Response:
    """The page shell (templates/scanners.html, filled by static/scanners.js): no data, public like the others."""
    return Response.html(shell.page("scanners", oidc=ctx.oidc))


NAME_BODY = {
    "type": "object",
    "properties": {"display_name": {"type": "string", "maxLength": 1000}},
    "required": ["display_name"],
    "additionalProperties": False,
}
MERGE_BODY = {
    "type": "object",
    "properties": {"into": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_ID}},
    "required": ["into"],
    "additionalProperties": False,
}
ID_ANSWERS = {400: "the scanner id or the body is malformed", 404: "no such scanner"}

ROUTES = (
    RouteSpec(
        "GET",
        "/api/scanners",
        scanners,
        "dose:read",
        "Every scanner: identity, display name, merge, study counts, station names and software versions seen",
        query=FORMAT,
        export_permission="dose:export",
        answers={400: "a query parameter is unknown or malformed"},
    ),
    RouteSpec(
        "GET",
        "/api/scanners/side-by-side",
        side_by_side,
        "dose:read",
        "One measure's box-plot statistics, mean and 95th percentile per scanner, under the dose filters",
        query={
            **FILTERS,
            "measure": Choice(*sql_scanners.MEASURES, description="the measure (required)").but(
                required=True
            ),
            **FORMAT,
        },
        export_permission="dose:export",
        answers={400: "a query parameter is unknown or malformed, or 'measure' is missing"},
    ),
    RouteSpec(
        "POST",
        "/api/scanners/{name}/rename",
        rename,
        "config:write",
        "Set a scanner's display name (the statistics and filters use it)",
        query={},
        body=NAME_BODY,
        answers=ID_ANSWERS,
    ),
    RouteSpec(
        "POST",
        "/api/scanners/{name}/merge",
        merge,
        "config:write",
        "Merge a scanner into another ('into': its id), or undo its merge ('into': null)",
        query={},
        body=MERGE_BODY,
        answers={**ID_ANSWERS, 409: "the other scanner is merged into this one (merge the other way)"},
    ),
    RouteSpec("GET", "/ui/scanners", page, PUBLIC, "The scanners page (shell)", content_type=HTML),
)
