"""The research page's API (`/nmdose/api/research/...`): one small handler per route, and their table."""

from __future__ import annotations

import contextlib

from nmdose.db import connect
from nmdose.errors import NmdoseError
from nmdose.web import sql_research
from nmdose.web.export import answer
from nmdose.web.params import FORMAT, YEARS, limit
from nmdose.web.router import HttpError, Request, Response
from nmdose.web.routes import Context, RouteSpec

BAD_PARAMETER = {400: "a query parameter is unknown or malformed"}


def yearly(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        return answer(sql_research.research_yearly(conn, request.args), request.args, "research-yearly")


def grid(request: Request, ctx: Context) -> Response:
    """The year x description grid: JSON {"rows", "count", "years", "totals"}; CSV/XLSX one line per row and a
    total line (sql_research.grid_table)."""
    f = request.args
    with ctx.db() as conn:
        got = sql_research.research_grid(conn, f)
    if f.get("format", "json") != "json":
        return answer(sql_research.grid_table(got), f, "research-grid")
    return answer(got["rows"], f, "research-grid", extra={"years": got["years"], "totals": got["totals"]})


def corrections(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        got = sql_research.research_corrections(conn)
    if request.args.get("format", "json") != "json":  # the export keeps the census's own text only
        got = [{k: v for k, v in r.items() if k != "reason"} for r in got]
    return answer(got, request.args, "modality-corrections")


def new_descriptions(request: Request, ctx: Context) -> Response:
    from nmdose.census.descriptions import list_descriptions

    with ctx.db() as conn:
        rows = list_descriptions(conn, ctx.cfg, only_new=True)
    for row in rows:
        row["modality_sets"] = "; ".join(f"{k}: {v}" for k, v in row.get("modality_sets", {}).items())
    return answer(rows, request.args, "new-descriptions")


def accept_descriptions(request: Request, ctx: Context) -> Response:
    """Make found descriptions targets (census.descriptions.accept, as `nmdose census accept`): recorded in
    rpacs.description_rule with who, their studies marked, retrieve_options.yaml edited when it is writable."""
    from nmdose.census.descriptions import accept, list_descriptions

    body = request.data if isinstance(request.data, dict) else {}
    wanted = body.get("descriptions")
    if not isinstance(wanted, list) or not wanted or not all(isinstance(d, str) for d in wanted):
        raise HttpError(400, "'descriptions' must be a non-empty list of study descriptions")
    by = getattr(request.user, "username", None) or (str(request.user) if request.user else "dev")
    # the worker role, as `nmdose census accept`: it writes pipeline rows (the web role reads only)
    with contextlib.closing(connect(ctx.cfg, role="worker")) as conn:
        known = {d["description"] for d in list_descriptions(conn, ctx.cfg)}
        unknown = [d for d in dict.fromkeys(wanted) if d not in known]
        if unknown:
            shown = ", ".join(repr(d[:80]) for d in unknown[:5]) + (" …" if len(unknown) > 5 else "")
            raise HttpError(400, f"not found by the census ({len(unknown)}): {shown}")
        try:
            result = accept(conn, ctx.cfg, wanted, by=by)
        except NmdoseError as exc:  # a description gone between the two reads: refused, nothing changed
            raise HttpError(400, str(exc)) from None
    resp = Response.json(result)
    resp.audit = accepted_audit(result.get("accepted") or [])
    return resp


AUDIT_DESCRIPTIONS = 50  # descriptions named in the audit row (its detail); the rest counted
AUDIT_DESCRIPTION_CHARS = 200


def accepted_audit(accepted: list[str]) -> dict:
    """The audit row's detail of an acceptance: the descriptions accepted (study descriptions, not patient data;
    the first AUDIT_DESCRIPTIONS, each cut at AUDIT_DESCRIPTION_CHARS) and how many, as `nmdose census accept`
    records them (the request body itself is never recorded)."""
    return {
        "accepted": [d[:AUDIT_DESCRIPTION_CHARS] for d in accepted[:AUDIT_DESCRIPTIONS]],
        "accepted_total": len(accepted),
    }


def failed(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        rows = sql_research.research_failed(conn, request.args.get("limit", 200))
    return answer(rows, request.args, "failed-retrievals")


def forward_incomplete(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        rows = sql_research.research_forward_incomplete(conn, request.args.get("limit", 200))
    return answer(rows, request.args, "forward-incomplete")


def imports(request: Request, ctx: Context) -> Response:
    """The watch-folder imports, newest first (folders named by their keyed hash, never by the patient)."""
    from nmdose.importer.store import recent

    with ctx.db() as conn:
        rows = recent(conn, request.args.get("limit", 50))
    for row in rows:
        row["folder"] = str(row.get("folder_hash") or "")[:12]
        row["study_uids"] = " ".join(row.get("study_uids") or [])
    return answer(rows, request.args, "imports")


def _route(pattern: str, handler, summary: str, query: dict) -> RouteSpec:
    return RouteSpec("GET", pattern, handler, "research:read", summary, query=query, answers=BAD_PARAMETER)


ACCEPT_BODY = {
    "type": "object",
    "properties": {
        "descriptions": {"type": "array", "maxItems": 1000, "items": {"type": "string", "maxLength": 1024}}
    },
    "required": ["descriptions"],
    "additionalProperties": False,
}

ROUTES = (
    _route(
        "/api/research/grid",
        grid,
        "Studies per description and modality set (rows) and year (columns, every year), by retrieval state",
        {**YEARS, **FORMAT},
    ),
    RouteSpec(
        "POST",
        "/api/research/descriptions/accept",
        accept_descriptions,
        "config:write",
        "Accept found study descriptions as retrieval targets (as `nmdose census accept`)",
        query={},
        body=ACCEPT_BODY,
        answers={
            400: "the body is malformed, the list is empty, or a description was not found by the census"
        },
    ),
    _route(
        "/api/research/yearly",
        yearly,
        "Studies per year, description, modality set and retrieval state",
        {**YEARS, **FORMAT},
    ),
    _route(
        "/api/research/corrections",
        corrections,
        "Modality corrections per description: found set, corrected set, reason, studies",
        FORMAT,
    ),
    _route(
        "/api/research/descriptions/new",
        new_descriptions,
        "Study descriptions waiting for acceptance",
        FORMAT,
    ),
    _route(
        "/api/research/failed",
        failed,
        "Failed or partial retrievals with their last error, newest first",
        {**limit(200, 10_000), **FORMAT},
    ),
    _route(
        "/api/research/forward-incomplete",
        forward_incomplete,
        "Studies whose forwarding to the dose PACS is not complete, stuck ones first",
        {**limit(200, 10_000), **FORMAT},
    ),
    _route(
        "/api/research/imports",
        imports,
        "Watch-folder imports (nmdose import), newest first: outcome, files, studies, bytes",
        {**limit(50, 1_000), **FORMAT},
    ),
)
