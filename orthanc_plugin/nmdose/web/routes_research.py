"""The research page's API (`/nmdose/api/research/...`): one small handler per route, and their table."""

from __future__ import annotations

from nmdose.web import sql_research
from nmdose.web.export import answer
from nmdose.web.params import FORMAT, YEARS, limit
from nmdose.web.router import Request, Response
from nmdose.web.routes import Context, RouteSpec

BAD_PARAMETER = {400: "a query parameter is unknown or malformed"}


def yearly(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        return answer(sql_research.research_yearly(conn, request.args), request.args, "research-yearly")


def corrections(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        return answer(sql_research.research_corrections(conn), request.args, "modality-corrections")


def new_descriptions(request: Request, ctx: Context) -> Response:
    from nmdose.census.descriptions import list_descriptions

    with ctx.db() as conn:
        rows = list_descriptions(conn, ctx.cfg, only_new=True)
    for row in rows:
        row["modality_sets"] = "; ".join(f"{k}: {v}" for k, v in row.get("modality_sets", {}).items())
    return answer(rows, request.args, "new-descriptions")


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


ROUTES = (
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
