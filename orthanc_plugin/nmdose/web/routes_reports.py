"""The physicist's report (`/nmdose/api/dose/report/...` and the page `/nmdose/ui/report`, issue 19): the
reference-level comparison per group × scanner × year, trends, histograms, the workload by weekday and hour, and
the annual report (JSON, CSV, XLSX; its print view `/nmdose/ui/report/print`).

JSON answers come from the per-data-version cache (web/cache.py, web/report_views.py: the dose worker computes the
page's opening answers after new data) like the dose page's; `format=csv|xlsx` is an
export and needs `dose:export` (the router checks it). Agents go out as people write them (web/names.py), the
stored text in `group_code_meaning`."""

from __future__ import annotations

from typing import Any

from nmdose.web import report_views, routes_dose, shell, sql_reports, xlsx
from nmdose.web.export import answer, export_filename
from nmdose.web.params import FORMAT, Choice, Int, limit
from nmdose.web.router import PUBLIC, HttpError, Request, Response
from nmdose.web.routes import HTML, Context, RouteSpec
from nmdose.web.routes_dose import FILTERS

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


def _measure_group(f: dict[str, Any], route: str) -> tuple[str, str]:
    measure, group = report_views.measure_group(f, route)
    groups = sql_reports.groups_of(measure)
    if group not in groups:
        raise HttpError(400, f"parameter 'group' must be one of {', '.join(groups)} for measure {measure}")
    return measure, group


def levels(request: Request, ctx: Context) -> Response:
    f = request.args
    measure, group = _measure_group(f, "levels")
    with ctx.db() as conn:
        got = report_views.cached(conn, ctx.cfg, "levels", f)
    extra = {"measure": measure, "group": group, "compared_with": "median"}
    return answer(got, f, f"report-levels-{measure}-{group}", extra=extra)


def trends(request: Request, ctx: Context) -> Response:
    f = request.args
    measure, group = _measure_group(f, "trends")
    period = f.get("period", "month")
    with ctx.db() as conn:
        got = report_views.cached(conn, ctx.cfg, "trends", f)
    extra = {"measure": measure, "group": group, "period": period, "periods": got["periods"],
             "unit": sql_reports.MEASURES[measure][1]}  # fmt: skip
    return answer(got["rows"], f, f"report-trends-{measure}-{group}-{period}", extra=extra)


def histogram(request: Request, ctx: Context) -> Response:
    f = request.args
    measure, group = _measure_group(f, "histogram")
    bins = f.get("bins", 20)
    with ctx.db() as conn:
        got = report_views.cached(conn, ctx.cfg, "histogram", f)
    extra = {"measure": measure, "group": group, "bins": bins, "unit": sql_reports.MEASURES[measure][1]}
    return answer(got, f, f"report-histogram-{measure}-{group}", extra=extra)


def workload(request: Request, ctx: Context) -> Response:
    f = request.args
    with ctx.db() as conn:
        got = report_views.cached(conn, ctx.cfg, "workload", f)
    return answer(got, f, "report-workload")


def annual(request: Request, ctx: Context) -> Response:
    """`format=json` (default): the comparison rows, and `protocols`, `agents`, `workload`, `generated`; `csv`:
    the comparison rows; `xlsx`: a sheet each."""
    f = request.args
    year = f["year"]
    generated = xlsx.stamp()  # the site's time zone (KST), named
    with ctx.db() as conn:
        got = report_views.cached(conn, ctx.cfg, "annual", f)
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


def patient_size(request: Request, ctx: Context) -> Response:
    """Dose against patient weight: CTDIvol and DLP per protocol (or description, standard name), activity per
    agent, a deterministic sample of at most `limit` points per group for the `top` groups, with the true counts
    (also of the values without a weight) and the reference levels that apply per group."""
    f = request.args
    group = f.get("group", "protocol")
    with ctx.db() as conn:
        got = report_views.cached(conn, ctx.cfg, "patient_size", f)
    points = got["ct"]["points"] + got["nm"]["points"]
    parts = {kind: {k: v for k, v in got[kind].items() if k != "points"} for kind in ("ct", "nm")}
    units = report_views.UNITS
    extra = {"group": group, "top": f.get("top", 8), "limit": f.get("limit", 300), **parts, "units": units}
    summary = [{**{k: v for k, v in g.items() if k != "levels"},
                "levels": "; ".join(f"{lv['name']}: {lv['value']:g} {lv['unit']}" for lv in g["levels"])}
               for g in got["ct"]["groups"] + got["nm"]["groups"]]  # fmt: skip
    return answer(
        points,
        f,
        f"report-patient-size-{group}",
        group_by="group",
        summary=lambda: summary,
        summary_title="Values per group: all, with a weight, without, shown; the reference levels that apply",
        extra=extra,
    )


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
    _route(
        "/api/dose/report/patient-size",
        patient_size,
        "Dose against patient weight per group (CT: CTDIvol, DLP; NM: activity), sampled, with counts and levels",
        {
            **FILTERS,
            "group": Choice(
                *sql_reports.SIZE_GROUPS,
                description="CT per protocol (default), description or standard_name; NM always per agent",
            ),
            "top": Int(1, 20, "the groups with the most values, per kind (default 8)"),
            **limit(300, 2000),
            **FORMAT,
        },
        {400: "a query parameter is unknown or malformed"},
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
