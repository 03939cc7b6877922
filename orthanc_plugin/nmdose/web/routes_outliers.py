"""Acknowledging the dose page's outliers (`POST /nmdose/api/dose/outliers/ack`; docs/dose.md "Outliers"): a
physicist marks a study's outliers reviewed, with a comment (required). Who comes from the authenticated user,
when is now; the router checks `alerts:ack` and the audit trail records the call with the study (like an alert's
acknowledgement, web/routes_alerts.py). Acknowledging again replaces the comment, who and when (the first time and
every earlier acknowledgement are kept: sql/021_outlier_acks.sql).

The query takes the dose page's filters and `levels`, those of the list the row was seen in: the study must be an
outlier there (of `reason` when given), else 404 (the 95th percentiles are those of the filtered set).

The history (`GET /nmdose/api/dose/outliers/ack-history`): every acknowledgement ever given, replaced ones too,
newest first, for a physicist or an audit; acknowledgements are of patients' studies, so reading them needs what
the outlier list needs (`dose:read`; its CSV/XLSX `dose:export`) and is audited like every route (the studies of
the answer in the audit row)."""

from __future__ import annotations

from nmdose.web import dose_views, sql_dose, sql_levels, sql_outliers
from nmdose.web.export import answer
from nmdose.web.params import DATE, FORMAT, TEXT, Choice, Int, limit
from nmdose.web.router import HttpError, Request, Response, check_uid
from nmdose.web.routes import Context, RouteSpec
from nmdose.web.routes_dose import FILTERS

ACK = "alerts:ack"

ACK_BODY = {
    "type": "object",
    "properties": {
        "study_instance_uid": {"type": "string", "maxLength": 64, "description": "the outlier's study"},
        "reason": {
            "type": "string",
            "enum": list(sql_outliers.REASONS),
            "description": "acknowledge only the hits of this reason (default: every reason of the study)",
        },
        "comment": {
            "type": "string",
            "maxLength": sql_outliers.MAX_COMMENT,
            "description": "why, what was done (required, not blank)",
        },
    },
    "required": ["study_instance_uid", "comment"],
    "additionalProperties": False,
}
ACK_QUERY = {
    **FILTERS,
    "levels": Choice(
        "official",
        "all",
        description="the list's levels: official only (default) or also proposed and example",
    ),
}


def acknowledge(request: Request, ctx: Context) -> Response:
    data = request.data or {}
    uid = check_uid(data.get("study_instance_uid", ""))
    comment = data.get("comment", "").strip()
    if not comment:
        raise HttpError(400, "'comment' is required: say why the value is acceptable or what was done")
    if "\x00" in comment:
        raise HttpError(400, "'comment' holds a NUL character")
    reason = data.get("reason")
    f = dict(request.args)
    who = getattr(request.user, "username", None) or "unknown"
    with ctx.db() as conn:
        if not sql_outliers.study_exists(conn, uid):
            raise HttpError(404, f"no dose record for study {uid}")
        if not is_outlier(conn, ctx, f, uid, reason):
            what = f"a {reason} outlier" if reason else "an outlier"
            raise HttpError(404, f"study {uid} is not {what} under these filters")
        row = sql_outliers.acknowledge(conn, uid, reason, who, comment)
    return Response.json(row)


HISTORY_QUERY = {
    "study_instance_uid": TEXT.but(description="only this study's acknowledgements (a StudyInstanceUID)"),
    "reason": Choice(
        *sql_outliers.HISTORY_REASONS,
        description="those that covered this reason (given for it or for every reason); any: those given for "
        "every reason only",
    ),
    "from": DATE.but(description="acknowledged on or after this day"),
    "to": DATE.but(description="acknowledged on or before this day"),
    "who": TEXT.but(description="acknowledged by this user (exact)"),
    **limit(100, sql_outliers.MAX_HISTORY_LIMIT),
    "offset": Int(0, 10_000_000, "skip this many rows (paging; default 0)"),
    **FORMAT,
}


def history(request: Request, ctx: Context) -> Response:
    """One page of the acknowledgements, newest first, with the total (sql_outliers.history)."""
    f = request.args
    uid = f.get("study_instance_uid")
    if uid is not None:
        check_uid(uid, "parameter 'study_instance_uid'")
    with ctx.db() as conn:
        rows, total = sql_outliers.history(
            conn,
            uid=uid,
            reason=f.get("reason"),
            date_from=f.get("from"),
            date_to=f.get("to"),
            who=f.get("who"),
            limit=f.get("limit", 100),
            offset=f.get("offset", 0),
        )
    extra = {"total": total, "offset": f.get("offset", 0), "limit": f.get("limit", 100)}
    return answer(rows, f, "outlier-ack-history", extra=extra)


def is_outlier(conn, ctx: Context, f: dict, uid: str, reason: str | None) -> bool:
    """Whether study `uid` is in the outlier list of the filters `f` (of `reason`, or any). A hit above a
    reference level depends on the study's own values only, so it is looked for among the study's rows alone
    (milliseconds); a hit above its group's 95th percentile needs the whole filtered set: it is looked up in the
    list's cached index (computed when missing: seconds on a hospital's years of data)."""
    rules = ctx.cfg.reference_levels.outliers
    q = sql_dose.resolve_agent(conn, f)

    def hits(extra: dict) -> bool:
        got = sql_levels.outliers(
            conn,
            {**q, **extra},
            ctx.levels(),
            1,
            factor=rules.factor,
            p95_min_n=rules.p95_min_values,
            study=uid,
        )
        return bool(got["rows"])  # (the study's rows: the counts are of the whole list)

    if reason != "p95" and hits({"reason": "reference_level", "study_instance_uid": uid}):
        return True
    if reason == "reference_level":
        return False
    # the list's index (web/dose_views.py): cached per version of the data and these filters, as the list read it
    index = dose_views.cached_index(conn, ctx.cfg, f)
    return uid in index["studies"].get("p95", {})


ROUTES = (
    RouteSpec(
        "POST",
        "/api/dose/outliers/ack",
        acknowledge,
        ACK,
        "Acknowledge a study's outliers (who: the caller; when: now; with a comment); again: a new comment",
        query=ACK_QUERY,
        body=ACK_BODY,
        answers={
            400: "the body or a query parameter is malformed, or the comment is blank",
            404: "no dose record for the study, or it is not an outlier (of that reason) under these filters",
        },
    ),
    RouteSpec(
        "GET",
        "/api/dose/outliers/ack-history",
        history,
        "dose:read",
        "Every acknowledgement of the outliers, replaced ones too (current or replaced when), newest first, paged",
        query=HISTORY_QUERY,
        export_permission="dose:export",
        answers={
            400: "a query parameter is unknown or malformed (limit 1-500, a date, 'from' after 'to', not a UID)"
        },
    ),
)
