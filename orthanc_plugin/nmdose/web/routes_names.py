"""Standard names (`/nmdose/api/names/...`, issue 16 item 1): the rules that map raw study descriptions, requested
procedures, acquisition protocols and agents to one standard name, the names in use, the raw values no rule maps
yet (grouped by normalised form, with counts), CSV/YAML import and export, and the page `/nmdose/ui/names`.

Reads need `dose:read`; every change needs `config:write` and applies the rules to every stored study at once, in
the change's transaction (nmdose.dose.standard_names.apply). The audit trail records each call with its body.
`{name}` in a path is the rule's id (the route walks of the audit tests know the path parameters `uid`, `name`).
"""

from __future__ import annotations

import contextlib

import psycopg2

from nmdose.db import connect
from nmdose.dose import standard_names as sn
from nmdose.web import cache, sql_names
from nmdose.web.params import Choice, Int
from nmdose.web.router import PUBLIC, HttpError, Request, Response
from nmdose.web.routes import HTML, Context, RouteSpec
from nmdose.web.shell import page as shell_page

WRITE = "config:write"
READ = "dose:read"
MAX_IMPORT = 5_000_000  # characters of an imported file (about 50,000 rules)

FIELD_SCHEMA = {"type": "string", "enum": list(sn.FIELDS)}
RAW_SCHEMA = {"type": "string", "maxLength": sn.MAX_RAW}
NAME_SCHEMA = {"type": "string", "maxLength": sn.MAX_NAME}
SCANNER_SCHEMA = {"type": ["integer", "null"], "minimum": 1, "maximum": 2_147_483_647}
RULE_BODY = {
    "type": "object",
    "properties": {
        "field": FIELD_SCHEMA,
        "raw_value": RAW_SCHEMA,
        "standard_name": NAME_SCHEMA,
        "scanner_id": SCANNER_SCHEMA,
    },
    "required": ["field", "raw_value", "standard_name"],
    "additionalProperties": False,
}
MAP_BODY = {
    "type": "object",
    "properties": {
        "standard_name": NAME_SCHEMA,
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 5000,
            "items": {
                "type": "object",
                "properties": {"field": FIELD_SCHEMA, "raw_value": RAW_SCHEMA, "scanner_id": SCANNER_SCHEMA},
                "required": ["field", "raw_value"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["standard_name", "items"],
    "additionalProperties": False,
}
IMPORT_BODY = {
    "type": "object",
    "properties": {
        "format": {"type": "string", "enum": ["csv", "yaml"]},
        "text": {"type": "string", "maxLength": MAX_IMPORT},
    },
    "required": ["format", "text"],
    "additionalProperties": False,
}
APPLY_BODY = {"type": "object", "properties": {}, "additionalProperties": False}


def _by(request: Request) -> str | None:
    user = request.user
    return str(getattr(user, "username", None) or user) if user is not None else None


def _body(request: Request) -> dict:
    if not isinstance(request.data, dict):
        raise HttpError(400, "a JSON body is required")
    return request.data


def _rule(values: dict, standard_name: str | None = None) -> sn.Rule:
    rule, problems = sn.check_rule(
        values.get("field"),
        values.get("raw_value"),
        standard_name if standard_name is not None else values.get("standard_name"),
        values.get("scanner_id"),
    )
    if rule is None:
        raise HttpError(400, "; ".join(problems))
    return rule


def _rule_id(request: Request) -> int:
    text = request.params["name"]
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise HttpError(400, f"a rule id is a positive integer, got {text[:40]!r}")
    return int(text)


@contextlib.contextmanager
def _writing(ctx: Context):
    """A connection of the worker role (the web role reads only) and one cursor; committed at the end."""
    with contextlib.closing(connect(ctx.cfg)) as conn, conn, conn.cursor() as cur:
        yield cur


def _conflict(rule: sn.Rule) -> HttpError:
    scope = "all scanners" if rule.scanner_id is None else f"scanner {rule.scanner_id}"
    return HttpError(
        409, f"a rule for {rule.field} {rule.normalised!r} ({scope}) exists already: edit that one"
    )


def _jsonable(row: dict | None) -> dict | None:
    return None if row is None else {k: v for k, v in row.items() if k != "inserted"}


# ----- reads -----


def list_rules(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        got = sql_names.rules(conn)
    return Response.json({"rows": got, "count": len(got), "fields": list(sn.FIELDS)})


def names_in_use(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        got, unnamed = sql_names.names_in_use(conn)
    return Response.json({"rows": got, "count": len(got), "studies_without_name": unnamed})


def suggestions(request: Request, ctx: Context) -> Response:
    f = request.args
    fields = (f["field"],) if "field" in f else sn.FIELDS
    with ctx.db() as conn:
        # kept per version of the dose data and of the rules (a rule for a value no study has changes no study):
        # on a million studies one computation takes seconds, the page asks it again after every mapping
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), max(updated_at)::text FROM dose.standard_name_rule")
            rules_version = cur.fetchone()
        conn.rollback()
        key = cache.cache_key("names-suggestions", {"fields": list(fields), "limit": f.get("limit", 500)},
                              rules_version)  # fmt: skip
        got = cache.cached_rows(conn, key, lambda: sql_names.suggestions(conn, fields, f.get("limit", 500)))
    return Response.json({"rows": got, "count": len(got)})


def export(request: Request, ctx: Context) -> Response:
    fmt = request.args.get("format", "csv")
    with ctx.db() as conn:
        got = sql_names.rules(conn)
    if fmt == "yaml":
        resp = Response(200, sn.to_yaml(got).encode(), "application/yaml; charset=utf-8")
    else:
        resp = Response(200, ("\ufeff" + sn.to_csv(got)).encode(), "text/csv; charset=utf-8")
    resp.headers["Content-Disposition"] = f'attachment; filename="standard-names.{fmt}"'
    return resp


# ----- changes (config:write), each applied to every study at once -----


def create(request: Request, ctx: Context) -> Response:
    rule = _rule(_body(request))
    with _writing(ctx) as cur:
        row = sn.create_rule(cur, rule, _by(request))
        if row is None:
            raise _conflict(rule)
        applied = sn.apply_changed(cur, {(rule.field, rule.normalised)})
    return Response.json({"rule": row, "applied": applied}, 201)


def update(request: Request, ctx: Context) -> Response:
    rule_id = _rule_id(request)
    rule = _rule(_body(request))
    try:
        with _writing(ctx) as cur:
            cur.execute("SELECT field, normalised FROM dose.standard_name_rule WHERE id = %s", (rule_id,))
            before = cur.fetchone()
            row = sn.update_rule(cur, rule_id, rule, _by(request))
            if row is None:
                raise HttpError(404, f"no standard-name rule {rule_id}")
            applied = sn.apply_changed(cur, {tuple(before), (rule.field, rule.normalised)})
    except psycopg2.errors.UniqueViolation:
        raise _conflict(rule) from None
    return Response.json({"rule": row, "applied": applied})


def delete(request: Request, ctx: Context) -> Response:
    rule_id = _rule_id(request)
    with _writing(ctx) as cur:
        row = sn.delete_rule(cur, rule_id)
        if row is None:
            raise HttpError(404, f"no standard-name rule {rule_id}")
        applied = sn.apply_changed(cur, {(row["field"], row["normalised"])})
    return Response.json({"rule": row, "applied": applied})


def _store(ctx: Context, rules: list[sn.Rule], by: str | None) -> Response:
    with _writing(ctx) as cur:
        counts = sn.upsert_rules(cur, rules, by)
        applied = sn.apply_changed(cur, sn.changed_keys(rules))
    return Response.json({**counts, "rules": len(rules), "applied": applied})


def map_values(request: Request, ctx: Context) -> Response:
    """Several raw values (e.g. the suggestions ticked on the page) -> one standard name."""
    body = _body(request)
    items = [
        (i, {**item, "standard_name": body.get("standard_name")}) for i, item in enumerate(body["items"], 1)
    ]
    try:
        rules = sn.check_items(items, what="item")
    except sn.RuleError as exc:
        return Response.json({"error": str(exc), "errors": exc.errors}, 400)
    return _store(ctx, rules, _by(request))


def import_rules(request: Request, ctx: Context) -> Response:
    body = _body(request)
    try:
        rules = sn.parse_csv(body["text"]) if body["format"] == "csv" else sn.parse_yaml(body["text"])
    except sn.RuleError as exc:
        message = f"nothing imported: {len(exc.errors)} problem(s): " + "; ".join(exc.errors[:20])
        return Response.json({"error": message, "errors": exc.errors}, 400)
    return _store(ctx, rules, _by(request))


def apply_all(request: Request, ctx: Context) -> Response:
    with _writing(ctx) as cur:
        applied = sn.apply(cur)
    return Response.json({"applied": applied})


def page(request: Request, ctx: Context) -> Response:
    """The page shell (templates/names.html, filled by static/names.js): no data, public like the others."""
    return Response.html(shell_page("names", oidc=ctx.oidc))


ID_ANSWERS = {
    400: "the rule id or the body is malformed (the message names the problem)",
    404: "no such rule",
    409: "another rule has the same field, normalised raw value and scope",
}
IMPORT_ANSWERS = {400: "the body is malformed, or the file has bad lines (`errors`: each with its line)"}

ROUTES = (
    RouteSpec("GET", "/api/names/rules", list_rules, READ, "The standard-name rules", query={}),
    RouteSpec(
        "GET",
        "/api/names/in-use",
        names_in_use,
        READ,
        "Each standard name with its studies, CT events, administrations and rules; studies without a name",
        query={},
    ),
    RouteSpec(
        "GET",
        "/api/names/suggestions",
        suggestions,
        READ,
        "Raw values no rule maps yet, grouped by field and normalised form, with counts and scanners",
        query={
            "field": Choice(*sn.FIELDS, description="only this field (default: all four)"),
            "limit": Int(1, 5000, "at most this many groups (default 500)"),
        },
    ),
    RouteSpec(
        "GET",
        "/api/names/export",
        export,
        READ,
        "The rules as a CSV or YAML file (the import format)",
        query={"format": Choice("csv", "yaml", description="csv (default) or yaml")},
    ),
    RouteSpec(
        "POST",
        "/api/names/rules",
        create,
        WRITE,
        "Add a rule (applied to every study at once)",
        query={},
        body=RULE_BODY,
        answers={201: "created, with the rows it renamed", 409: ID_ANSWERS[409]},
    ),
    RouteSpec(
        "PUT",
        "/api/names/rules/{name}",
        update,
        WRITE,
        "Change rule {name} (its id; applied to every study at once)",
        query={},
        body=RULE_BODY,
        answers=ID_ANSWERS,
    ),
    RouteSpec(
        "DELETE",
        "/api/names/rules/{name}",
        delete,
        WRITE,
        "Delete rule {name} (its id; the names it gave are taken off at once)",
        query={},
        answers={400: ID_ANSWERS[400], 404: ID_ANSWERS[404]},
    ),
    RouteSpec(
        "POST",
        "/api/names/map",
        map_values,
        WRITE,
        "Map several raw values (e.g. ticked suggestions) to one standard name",
        query={},
        body=MAP_BODY,
        answers={400: "the body is malformed or an item is bad (`errors`)"},
    ),
    RouteSpec(
        "POST",
        "/api/names/import",
        import_rules,
        WRITE,
        "Import rules from CSV or YAML text (all or nothing; a rule already there gets the new name)",
        query={},
        body=IMPORT_BODY,
        answers=IMPORT_ANSWERS,
    ),
    RouteSpec(
        "POST",
        "/api/names/apply",
        apply_all,
        WRITE,
        "Apply the rules to every stored study again (idempotent)",
        query={},
        body=APPLY_BODY,
    ),
    RouteSpec("GET", "/ui/names", page, PUBLIC, "The standard-names page (shell)", content_type=HTML),
)
