"""Dose alerts on the web (`/nmdose/api/alerts/...`, `/nmdose/ui/alerts`; docs/alerts.md): the firings (filtered by
state, rule and date, paged), acknowledging one (who comes from the token, with a comment; audited like every
route), and the rules (read: dose:read; create, replace, delete: config:write). The SQL is nmdose.alerts.store's,
shared with `nmdose alerts`. `{name}` is the firing's or rule's number (the audit tests' route walks know the path
parameters `uid` and `name`)."""

from __future__ import annotations

from nmdose.alerts import store
from nmdose.alerts.rules import RULE_SCHEMA, RuleError
from nmdose.web import shell
from nmdose.web.export import answer
from nmdose.web.params import DATE, FORMAT, Choice, Int, limit
from nmdose.web.router import PUBLIC, HttpError, Request, Response
from nmdose.web.routes import HTML, Context, RouteSpec

ACK = "alerts:ack"
WRITE = "config:write"
MAX_OFFSET = 10_000_000

FIRINGS_QUERY = {
    "state": Choice("open", "acknowledged", "all", description="open (default), acknowledged or all"),
    "rule_id": Int(1, 2_147_483_647, "only this rule's firings"),
    "from": DATE.but(description="fired on or after this day"),
    "to": DATE.but(description="fired on or before this day"),
    **limit(50, 1000),
    "offset": Int(0, MAX_OFFSET, "rows to skip (paging)"),
    **FORMAT,
}
ACK_BODY = {
    "type": "object",
    "properties": {"comment": {"type": "string", "maxLength": 2000, "description": "why, what was done"}},
    "additionalProperties": False,
}


def _number(request: Request, what: str) -> int:
    value = request.params.get("name", "")
    if not value.isascii() or not value.isdigit() or len(value) > 10 or int(value) > 2_147_483_647:
        raise HttpError(400, f"{what} must be a number, got {value[:40]!r}")
    return int(value)


def firings(request: Request, ctx: Context) -> Response:
    f = request.args
    with ctx.db() as conn:
        rows, total = store.firings(
            conn,
            state=f.get("state", "open"),
            rule_id=f.get("rule_id"),
            date_from=f.get("from"),
            date_to=f.get("to"),
            limit=f.get("limit", 50),
            offset=f.get("offset", 0),
        )
    return answer(rows, f, "alerts", extra={"total": total, "offset": f.get("offset", 0)})


def acknowledge(request: Request, ctx: Context) -> Response:
    firing = _number(request, "the alert")
    comment = (request.data or {}).get("comment", "")
    if "\x00" in comment:
        raise HttpError(400, "'comment' holds a NUL character")
    who = getattr(request.user, "username", None) or "unknown"
    with ctx.db() as conn:
        row = store.acknowledge(conn, firing, who, comment)
    if row is None:
        raise HttpError(404, f"no alert {firing}")
    return Response.json(row)


def rules(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        return answer(store.rules(conn), request.args, "alert-rules")


def _save(request: Request, ctx: Context, rule_id: int | None) -> Response:
    try:
        with ctx.db() as conn:
            rule = store.upsert_rule(
                conn, request.data or {}, rule_id=rule_id, prod=ctx.cfg.running_mode == "prod"
            )
    except RuleError as exc:
        raise HttpError(400, str(exc)) from None
    if not rule:
        raise HttpError(404, f"no alert rule {rule_id}")
    return Response.json(rule, 200 if rule_id else 201)


def create_rule(request: Request, ctx: Context) -> Response:
    return _save(request, ctx, None)


def replace_rule(request: Request, ctx: Context) -> Response:
    return _save(request, ctx, _number(request, "the rule"))


def delete_rule(request: Request, ctx: Context) -> Response:
    rule_id = _number(request, "the rule")
    with ctx.db() as conn:
        if not store.delete_rule(conn, rule_id):
            raise HttpError(404, f"no alert rule {rule_id}")
    return Response.json({"deleted": rule_id})


def page(request: Request, ctx: Context) -> Response:
    """The page shell (templates/alerts.html, filled by static/alerts.js): no data, public like the others."""
    return Response.html(shell.page("alerts", oidc=ctx.oidc))


RULE_ANSWERS = {400: "the rule is malformed or cannot work (the message names the field)"}
ID_ANSWERS = {400: "not a number, or the body is malformed", 404: "no such alert rule"}

ROUTES = (
    RouteSpec(
        "GET",
        "/api/alerts/firings",
        firings,
        "dose:read",
        "Dose alerts fired, newest first: rule, study, value and limit, acknowledgement, deliveries",
        query=FIRINGS_QUERY,
        export_permission="dose:export",
        answers={400: "a query parameter is unknown or malformed"},
    ),
    RouteSpec(
        "POST",
        "/api/alerts/firings/{name}/ack",
        acknowledge,
        ACK,
        "Acknowledge a dose alert (who: the caller; when: now; with a comment)",
        query={},
        body=ACK_BODY,
        answers={400: "not a number, or the body is malformed", 404: "no such alert"},
    ),
    RouteSpec(
        "GET",
        "/api/alerts/rules",
        rules,
        "dose:read",
        "The alert rules with their firings",
        query=FORMAT,
        export_permission="dose:export",
    ),
    RouteSpec(
        "POST",
        "/api/alerts/rules",
        create_rule,
        WRITE,
        "Create an alert rule (or replace the one of the same name)",
        query={},
        body=RULE_SCHEMA,
        answers={201: "created", **RULE_ANSWERS},
    ),
    RouteSpec(
        "PUT",
        "/api/alerts/rules/{name}",
        replace_rule,
        WRITE,
        "Replace an alert rule",
        query={},
        body=RULE_SCHEMA,
        answers={**RULE_ANSWERS, **ID_ANSWERS, 400: "not a number, or the rule is malformed or cannot work"},
    ),
    RouteSpec(
        "DELETE",
        "/api/alerts/rules/{name}",
        delete_rule,
        WRITE,
        "Delete an alert rule with its firings and deliveries",
        query={},
        answers=ID_ANSWERS,
    ),
    RouteSpec("GET", "/ui/alerts", page, PUBLIC, "The dose alerts page (shell)", content_type=HTML),
)
