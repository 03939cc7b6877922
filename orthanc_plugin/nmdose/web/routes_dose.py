"""The dose page's API (`/nmdose/api/dose/...`): one small handler per route, and their table.

Agents go out as people write them (web/names.py: `¹⁸F-FDG`), the stored text beside them (`agent_code_meaning`);
the cached answers keep the stored text, so the names are put in on the way out.

The statistics routes answer from the per-data-version cache (web/dose_views.py); `format=csv|xlsx` of a dose
route is an export and needs `dose:export` (the router checks it before the handler)."""

from __future__ import annotations

from nmdose.web import cache, names, sql_dose, sql_levels, sql_outliers
from nmdose.web.dose_views import box_groups, cached_dose_rows
from nmdose.web.export import answer, csv_answer, sql_csv
from nmdose.web.params import DOSE_FILTERS, FORMAT, MAX_LIMIT, Choice, Int, limit
from nmdose.web.router import HttpError, Request, Response, check_uid
from nmdose.web.routes import Context, RouteSpec

BAD_PARAMETER = {400: "a query parameter is unknown or malformed"}

# The dose filters (web/params.py DOSE_FILTERS, applied by web/sql_common.py dose_where), under the name the other
# route tables import.
FILTERS = DOSE_FILTERS
CHOICE_FIELD = Choice(*sql_dose.CHOICE_FIELDS, description="the filter whose values are asked").but(
    required=True
)


def ct_protocols(request: Request, ctx: Context) -> Response:
    f = request.args
    with ctx.db() as conn:
        return answer(
            cached_dose_rows(conn, ctx.cfg, "ct_protocols", f), f, f"ct-{f.get('group', 'protocol')}"
        )


def ct_monthly(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        f = request.args
        name = "ct-monthly-standard-name" if f.get("group") == "standard_name" else "ct-monthly"
        return answer(cached_dose_rows(conn, ctx.cfg, "ct_monthly", f), f, name)


def ct_events(request: Request, ctx: Context) -> Response:
    """The filtered events (JSON, CSV: localizers too, with their type and `localizer`); the XLSX has one sheet
    per acquisition protocol without the localizers (its summary says how many were left out)."""
    f = request.args
    with ctx.db() as conn:
        q = sql_dose.resolve_agent(conn, f)  # the agent filter: raw text or display name
        if f.get("format") == "csv":  # each line written by PostgreSQL, no dicts (export.sql_csv)
            body = sql_csv(conn, *sql_dose.ct_events_query(q, f.get("limit", MAX_LIMIT)))
            if body is not None:
                return csv_answer(body, f, "ct-events")
        events = sql_dose.ct_events(conn, q, f.get("limit", MAX_LIMIT))
        if f.get("format") == "xlsx":
            kept = [e for e in events if not e["localizer"]]
            f = {**f, "localizer_events_left_out": len(events) - len(kept)}
            events = kept
        return answer(
            events,
            f,
            "ct-events",
            group_by="acquisition_protocol",
            summary=lambda: sql_dose.ct_protocols(conn, q, "protocol"),
            summary_title="CTDIvol and DLP per acquisition protocol (one value per irradiation event)",
        )


def activity(request: Request, ctx: Context) -> Response:
    f = request.args
    with ctx.db() as conn:
        return answer(
            names.display_rows(cached_dose_rows(conn, ctx.cfg, "activity", f)),
            f,
            f"activity-{f.get('group', 'agent')}",
        )


def activity_points(request: Request, ctx: Context) -> Response:
    f = request.args
    with ctx.db() as conn:
        return answer(
            names.display_rows(cached_dose_rows(conn, ctx.cfg, "activity_points", f)),
            f,
            "activity-weight",
            group_by="agent",
            summary=lambda: names.display_rows(
                sql_dose.activity(conn, sql_dose.resolve_agent(conn, f), "agent")
            ),
            summary_title="Activity per radiopharmaceutical (all filtered administrations)",
        )


def reference_levels(request: Request, ctx: Context) -> Response:
    return answer(sql_levels.reference_level_rows(ctx.levels()), request.args, "reference-levels")


def outliers(request: Request, ctx: Context) -> Response:
    """One page of the outliers (`limit`, `offset`), with the total, the counts per reason and the rules; each
    row with its acknowledgement (web/routes_outliers.py; `ack_history`: how many were given, replaced ones too)
    and its study's latest acknowledged dose alert."""
    f = request.args
    rules = ctx.cfg.reference_levels.outliers
    with ctx.db() as conn:
        got = cached_dose_rows(conn, ctx.cfg, "outliers", f)
        sql_outliers.add_alert_acks(conn, got["rows"])
        sql_outliers.add_ack_history(conn, got["rows"])
    extra = {
        "total": got["total"],
        "counts": got["counts"],
        "acknowledged": f.get("acknowledged", "no"),
        "ack_counts": got.get("ack_counts", {}),
        "offset": f.get("offset", 0),
        "factor": rules.factor,
        "p95_min_values": rules.p95_min_values,
        "levels": f.get("levels", "official"),
    }
    return answer(names.display_group(got["rows"]), f, "dose-outliers", extra=extra)


def box(request: Request, ctx: Context) -> Response:
    f = request.args
    if "measure" not in f:
        raise HttpError(400, f"parameter 'measure' is required (one of {', '.join(sql_dose.BOX_MEASURES)})")
    measure = f["measure"]
    groups = box_groups(measure)
    group = f.get("group", groups[0])
    if group not in groups:
        raise HttpError(400, f"parameter 'group' must be one of {', '.join(groups)} for measure {measure}")
    with ctx.db() as conn:
        return answer(
            names.display_rows(cached_dose_rows(conn, ctx.cfg, "box", f)), f, f"box-{measure}-{group}"
        )


def effective_dose(request: Request, ctx: Context) -> Response:
    with ctx.db() as conn:
        f = request.args
        rows = cached_dose_rows(conn, ctx.cfg, "effective_dose", f)
        name = "effective-dose-standard-name" if f.get("group") == "standard_name" else "effective-dose"
        return answer(rows, f, name)


def dead_letter(request: Request, ctx: Context) -> Response:
    f = request.args
    with ctx.db() as conn:
        rows, counts = sql_dose.dead_letters(conn, f.get("state", "open"), f.get("limit", 500))
    return answer(rows, f, "dose-dead-letter", extra=counts)


def choices(request: Request, ctx: Context) -> Response:
    """The values one text filter may take (`field`) with their counts, most frequent first, under the other
    filters: the page's suggestions. Agents as people write them (the stored text in `agent_code_meaning`)."""
    f = request.args
    with ctx.db() as conn:

        def compute():
            return sql_dose.choices(conn, sql_dose.resolve_agent(conn, f), f["field"])

        exported = f.get("format", "json") != "json"  # exports are always computed (dose_views)
        got = compute() if exported else cache.cached_rows(conn, cache.cache_key("choices", f), compute)
    if f["field"] == "agent":
        got = [
            {"value": names.agent_name(r["value"]), "agent_code_meaning": r["value"], "n": r["n"]}
            for r in got
        ]
    return answer(got, f, f"choices-{f['field']}")


def dose_study(request: Request, ctx: Context) -> Response:
    uid = check_uid(request.params["uid"])
    with ctx.db() as conn:
        data = sql_dose.dose_study(conn, uid)
    if data is None:
        raise HttpError(404, f"no dose record for study {uid}")
    return Response.json(data)


def dose_route(pattern: str, handler, summary: str, query: dict, answers=BAD_PARAMETER) -> RouteSpec:
    return RouteSpec(
        "GET",
        pattern,
        handler,
        "dose:read",
        summary,
        query=query,
        export_permission="dose:export",
        answers=answers,
    )


GROUP_CT = Choice(
    "protocol",
    "description",
    "standard_name",
    description="per acquisition protocol (default), study description or standard name (per study)",
)
GROUP_NM = Choice(
    "agent",
    "description",
    "standard_name",
    description="per radiopharmaceutical (default), study description or standard name",
)
GROUP_STUDY = Choice(
    "description", "standard_name", description="per study description (default) or standard name"
)

ROUTES = (
    dose_route(
        "/api/dose/ct-protocols",
        ct_protocols,
        "CTDIvol and DLP statistics per acquisition protocol (per event) or study description (per study)",
        {**FILTERS, "group": GROUP_CT, **FORMAT},
    ),
    dose_route(
        "/api/dose/ct-monthly",
        ct_monthly,
        "Median DLP per study per month and study description, every month of the range present",
        {**FILTERS, "group": GROUP_STUDY, **FORMAT},
    ),
    dose_route(
        "/api/dose/ct-events",
        ct_events,
        "The filtered CT irradiation events with their study's fields (XLSX: one sheet per protocol)",
        {**FILTERS, **limit(MAX_LIMIT), **FORMAT},
    ),
    dose_route(
        "/api/dose/activity",
        activity,
        "Administered activity and activity per kg per radiopharmaceutical or study description",
        {**FILTERS, "group": GROUP_NM, **FORMAT},
    ),
    dose_route(
        "/api/dose/activity-points",
        activity_points,
        "Activity against patient weight, one point per administration (XLSX: one sheet per agent)",
        {**FILTERS, **limit(5000), **FORMAT},
    ),
    dose_route(
        "/api/dose/reference-levels",
        reference_levels,
        "The configured reference levels with their source, year and status",
        FORMAT,
    ),
    dose_route(
        "/api/dose/outliers",
        outliers,
        "Values above factor x an applicable reference level or above their group's 95th percentile, paged",
        {
            **FILTERS,
            "reason": Choice("reference_level", "p95", description="only the hits of this reason"),
            "levels": Choice(
                "official",
                "all",
                description="compare with official levels only (default) or also proposed and example ones",
            ),
            "acknowledged": Choice(
                "no",
                "yes",
                "all",
                description="the worklist: not yet acknowledged (default), acknowledged, or all",
            ),
            **limit(1000),
            "offset": Int(0, 10_000_000, "skip this many rows of the list (paging; default 0)"),
            **FORMAT,
        },
    ),
    dose_route(
        "/api/dose/box",
        box,
        "Box-plot statistics of one measure per group, with the reference levels that apply",
        {
            **FILTERS,
            "measure": Choice(*sql_dose.BOX_MEASURES, description="the measure (required)"),
            "group": Choice(
                "protocol",
                "description",
                "agent",
                "standard_name",
                description="CT: protocol (default), description or standard_name (per study); activity: agent "
                "(default), description or standard_name",
            ),
            **FORMAT,
        },
        {400: "a query parameter is unknown or malformed, 'measure' is missing or 'group' does not fit it"},
    ),
    dose_route(
        "/api/dose/effective-dose",
        effective_dose,
        "Effective dose per study description (or standard name): CT, radiopharmaceutical and total",
        {**FILTERS, "group": GROUP_STUDY, **FORMAT},
    ),
    dose_route(
        "/api/dose/dead-letter",
        dead_letter,
        "Dose files that failed to ingest, newest first, with how many are open and resolved",
        {
            "state": Choice("open", "resolved", "all", description="open (default), resolved or all"),
            **limit(500, 10_000),
            **FORMAT,
        },
    ),
    dose_route(
        "/api/dose/choices",
        choices,
        "The values a text filter may take (field) with their counts, most frequent first (at most 200)",
        {**FILTERS, "field": CHOICE_FIELD, **FORMAT},
        {400: "a query parameter is unknown or malformed, or 'field' is missing"},
    ),
    RouteSpec(
        "GET",
        "/api/dose/study/{uid}",
        dose_study,
        "dose:read",  # JSON only
        "One study's dose record: its CT events, administrations and source objects",
        query={},
        answers={
            400: "the UID is not a DICOM UID, or a query parameter was given",
            404: "no dose record for this study",
        },
    ),
)
