"""The physicist's report (`/nmdose/api/dose/report/...` and the page `/nmdose/ui/report`, issue 19): the
reference-level comparison per group × scanner × year, trends, histograms, the workload by weekday and hour, and
the annual report (JSON, CSV, XLSX; its print view `/nmdose/ui/report/print`).

JSON answers come from the per-data-version cache (web/cache.py) like the dose page's; `format=csv|xlsx` is an
export and needs `dose:export` (the router checks it). Agents go out as people write them (web/names.py), the
stored text in `group_code_meaning`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from nmdose.web import cache, names, routes_dose, shell, sql_dose, sql_levels, sql_reports, xlsx
from nmdose.web.export import answer, export_filename
from nmdose.web.params import FORMAT, Choice, Int
from nmdose.web.router import PUBLIC, HttpError, Request, Response
from nmdose.web.routes import HTML, Context, RouteSpec
from nmdose.web.routes_dose import FILTERS

# Part of every cache key: raised when the columns of an answer change.
ANSWER_VERSION = 1

MEASURE = Choice(
    *sql_reports.MEASURES,
    description="ctdivol (mGy), dlp (mGy·cm), activity (MBq) or per_kg (MBq/kg)",
)
GROUP = Choice(
    *sql_reports.ALL_GROUPS,
    description="protocol, description (CT) or agent, description (NM), standard_name or age_band (both; "
    "0-1, 1-5, 5-10, 10-15, 15-18 years, adult, unknown); default: protocol (CT) or agent (NM)",
)
BAD_GROUP = {400: "a query parameter is unknown or malformed, or 'group' does not fit 'measure'"}
TOP = {"top": Int(1, 20, "the groups with the most values (default 5)")}


def _measure_group(f: dict[str, Any], default_measure: str) -> tuple[str, str]:
    measure = f.get("measure", default_measure)
    groups = sql_reports.groups_of(measure)
    group = f.get("group", groups[0])
    if group not in groups:
        raise HttpError(400, f"parameter 'group' must be one of {', '.join(groups)} for measure {measure}")
    return measure, group


def _display(rows: list[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    """Rows grouped by agent: the agent as people write it in `group`, the stored text in `group_code_meaning`."""
    if group != "agent":
        return rows
    return [{**r, "group": names.agent_name(r["group"]) or r["group"], "group_code_meaning": r["group"]}
            for r in rows]  # fmt: skip


def _cached(conn, ctx: Context, route: str, f: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """A JSON answer from the per-version cache (the levels' JSON part of the key); exports always computed."""
    if f.get("format", "json") != "json":
        return compute()
    key = cache.cache_key(f"report_{route}", f, ANSWER_VERSION, sql_levels.levels_json(ctx.levels()))
    return cache.cached_rows(conn, key, compute)


def levels(request: Request, ctx: Context) -> Response:
    f = request.args
    measure, group = _measure_group(f, "ctdivol")
    with ctx.db() as conn:
        q = sql_dose.resolve_agent(conn, f)
        got = _cached(
            conn,
            ctx,
            "levels",
            f,
            lambda: _display(sql_reports.level_comparison(conn, q, ctx.levels(), measure, group), group),
        )
    extra = {"measure": measure, "group": group, "compared_with": "median"}
    return answer(got, f, f"report-levels-{measure}-{group}", extra=extra)


def trends(request: Request, ctx: Context) -> Response:
    f = request.args
    measure, group = _measure_group(f, "dlp")
    period = f.get("period", "month")

    def compute() -> dict[str, Any]:
        q = sql_dose.resolve_agent(conn, f)
        got, periods = sql_reports.trends(conn, q, measure, group, period, f.get("top", 5))
        return {"rows": _display(got, group), "periods": periods}

    with ctx.db() as conn:
        got = _cached(conn, ctx, "trends", f, compute)
    extra = {"measure": measure, "group": group, "period": period, "periods": got["periods"],
             "unit": sql_reports.MEASURES[measure][1]}  # fmt: skip
    return answer(got["rows"], f, f"report-trends-{measure}-{group}-{period}", extra=extra)


def histogram(request: Request, ctx: Context) -> Response:
    f = request.args
    measure, group = _measure_group(f, "ctdivol")
    bins, top = f.get("bins", 20), f.get("top", 4)
    with ctx.db() as conn:
        q = sql_dose.resolve_agent(conn, f)
        got = _cached(
            conn,
            ctx,
            "histogram",
            f,
            lambda: _display(sql_reports.histogram(conn, q, measure, group, bins, top), group),
        )
    extra = {"measure": measure, "group": group, "bins": bins, "unit": sql_reports.MEASURES[measure][1]}
    return answer(got, f, f"report-histogram-{measure}-{group}", extra=extra)


def workload(request: Request, ctx: Context) -> Response:
    f = request.args
    with ctx.db() as conn:
        q = sql_dose.resolve_agent(conn, f)
        got = _cached(conn, ctx, "workload", f, lambda: sql_reports.workload(conn, q))
    return answer(got, f, "report-workload")


# The annual report's comparison tables: (measure, group), as a physicist reads them against national DRLs.
ANNUAL_COMPARISONS = (
    ("ctdivol", "protocol"),
    ("dlp", "description"),
    ("activity", "agent"),
    ("per_kg", "agent"),
)


def annual_data(conn, ctx: Context, year: int) -> dict[str, Any]:
    """The annual report of `year`: the reference-level comparisons, CT statistics per acquisition protocol,
    activity per agent, the workload."""
    f = {"from": dt.date(year, 1, 1), "to": dt.date(year, 12, 31)}
    comparison = []
    for measure, group in ANNUAL_COMPARISONS:
        comparison += _display(sql_reports.level_comparison(conn, f, ctx.levels(), measure, group), group)
    return {
        "levels": comparison,
        "protocols": sql_dose.ct_protocols(conn, f, "protocol"),
        "agents": names.display_rows(sql_dose.activity(conn, f, "agent")),
        "workload": sql_reports.workload(conn, f),
    }


def annual(request: Request, ctx: Context) -> Response:
    """`format=json` (default): the comparison rows, and `protocols`, `agents`, `workload`, `generated`; `csv`:
    the comparison rows; `xlsx`: a sheet each."""
    f = request.args
    year = f["year"]
    generated = xlsx.stamp()  # the site's time zone (KST), named
    with ctx.db() as conn:
        got = _cached(conn, ctx, "annual", f, lambda: annual_data(conn, ctx, year))
    if f.get("format") == "xlsx":
        body = xlsx.sheets_workbook(
            {
                "Reference levels": got["levels"],
                "CT protocols": got["protocols"],
                "Radiopharmaceuticals": got["agents"],
                "Workload": got["workload"],
            },
            title=f"nmdose annual dose report {year}",
            parameters={"year": year, "ratio": "median / reference level", "scanner": "station name"},
        )
        resp = Response(200, body, xlsx.CONTENT_TYPE)
        name = export_filename(f"annual-report-{year}", {})
        resp.headers["Content-Disposition"] = f'attachment; filename="{name}.xlsx"'
        return resp
    extra = {"year": year, "generated": generated, "compared_with": "median",
             **{k: got[k] for k in ("protocols", "agents", "workload")}}  # fmt: skip
    return answer(got["levels"], f, f"annual-report-{year}", extra=extra)


def page(request: Request, ctx: Context) -> Response:
    """The report page (shell, templates/report.html, static/report.js)."""
    return Response.html(shell.page("report", oidc=ctx.oidc))


def print_page(request: Request, ctx: Context) -> Response:
    """The annual report's print view: the same page and script without navigation or inputs (`print`)."""
    body = shell.render("report.html")
    return Response.html(shell.shell("report", body, data={"print": True}, depth=2, oidc=ctx.oidc))


def _route(pattern: str, handler, summary: str, query: dict, answers=BAD_GROUP) -> RouteSpec:
    return routes_dose.dose_route(pattern, handler, summary, query, answers)  # dose:read, exports dose:export


ROUTES = (
    _route(
        "/api/dose/report/levels",
        levels,
        "Reference-level comparison per group x scanner x year: N, median, p75, the level, ratio median/level",
        {**FILTERS, "measure": MEASURE, "group": GROUP, **FORMAT},
    ),
    _route(
        "/api/dose/report/trends",
        trends,
        "Median and N of a measure per month, quarter or year for the groups with most values",
        {
            **FILTERS,
            "measure": MEASURE,
            "group": GROUP,
            "period": Choice(*sql_reports.PERIODS, description="month (default), quarter or year"),
            **TOP,
            **FORMAT,
        },
    ),
    _route(
        "/api/dose/report/histogram",
        histogram,
        "Histogram of a measure per group: equal bins from the smallest value to the 99th percentile",
        {
            **FILTERS,
            "measure": MEASURE,
            "group": GROUP,
            "bins": Int(5, 100, "number of bins (default 20)"),
            "top": Int(1, 12, "the groups with the most values (default 4)"),
            **FORMAT,
        },
    ),
    _route(
        "/api/dose/report/workload",
        workload,
        "Studies per kind (CT, NM, CT+NM), weekday and hour of the study time",
        {**FILTERS, **FORMAT},
        {400: "a query parameter is unknown or malformed"},
    ),
    _route(
        "/api/dose/report/annual",
        annual,
        "The annual report of one year: reference-level comparisons, CT protocols, agents, workload",
        {"year": Int(1900, 2200, "the year (required)").but(required=True), **FORMAT},
        {400: "a query parameter is unknown or malformed, or 'year' is missing"},
    ),
    RouteSpec("GET", "/ui/report", page, PUBLIC, "The physicist's report page (shell)", content_type=HTML),
    RouteSpec(
        "GET",
        "/ui/report/print",
        print_page,
        PUBLIC,
        "The annual report's print view (shell)",
        content_type=HTML,
    ),
)
