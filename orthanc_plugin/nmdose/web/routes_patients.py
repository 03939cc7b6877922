"""Patient cumulative dose (`/nmdose/api/dose/patients...`, issue 16 item 4): the patients whose effective dose
over a rolling window reaches a threshold, one patient's timeline, and re-identification
(`/nmdose/api/patients/{name}/identity`: not under `/api/dose/`, whose routes are dose reads with exports).
`{name}` is the pseudonym (the route walks of the audit tests know the path parameters `uid` and `name`).

A patient is known here only by the keyed pseudonym of its PatientID (docs/dose.md "Patient pseudonym"). Turning
a pseudonym back into a PatientID reads the research PACS census and needs `patient:reidentify`; the audit trail
records every call with the studies it named (the answer's `study_instance_uid` values)."""

from __future__ import annotations

import re

from nmdose.secrets import patient_pseudonym, pseudonym_key
from nmdose.web import shell, sql_patients
from nmdose.web.export import answer
from nmdose.web.params import FORMAT, TEXT, Int, Number, limit
from nmdose.web.router import PUBLIC, HttpError, Request, Response
from nmdose.web.routes import HTML, Context, RouteSpec

PSEUDONYM_RE = re.compile(r"^p[0-9]{1,3}:[0-9a-f]{32}$")
DEFAULT_WINDOW_YEARS = 1
# issue 16: 50 mSv in 1 year, 100 mSv in 5 years; a window of 5 years or more defaults to the second
DEFAULT_THRESHOLDS_MSV = ((5, 100.0), (1, 50.0))

WINDOW = {
    "window_years": Int(1, 50, "length of the rolling window in years, ending at each study (default 1)"),
}
QUERY = {
    **WINDOW,
    "threshold_msv": Number(
        100_000, "list patients whose largest window sum reaches this (default 50 mSv, 100 mSv for 5+ years)"
    ),
    **limit(100, 10_000),
    **FORMAT,
}


def default_threshold(years: int) -> float:
    return next(msv for at_least, msv in DEFAULT_THRESHOLDS_MSV if years >= at_least)


def check_pseudonym(value: object) -> str:
    """`value` if it is a pseudonym (`p1:` and 32 hex digits), else HttpError 400."""
    if not isinstance(value, str) or not PSEUDONYM_RE.match(value):
        raise HttpError(400, f"a patient pseudonym is p<n>: and 32 hex digits, got {str(value)[:80]!r}")
    return value


def patients(request: Request, ctx: Context) -> Response:
    f = request.args
    years = f.get("window_years", DEFAULT_WINDOW_YEARS)
    threshold = f.get("threshold_msv", default_threshold(years))
    with ctx.db() as conn:
        got, counts = sql_patients.patients(conn, years, threshold, f.get("limit", 100))
    extra = {**counts, "window_years": years, "threshold_msv": threshold}
    return answer(got, f, f"patients-{years}y-{threshold:g}msv", extra=extra)


def timeline(request: Request, ctx: Context) -> Response:
    pseudonym = check_pseudonym(request.params["name"])
    f = request.args
    years = f.get("window_years", DEFAULT_WINDOW_YEARS)
    with ctx.db() as conn:
        got = sql_patients.timeline(conn, pseudonym, years)
    if not got:
        raise HttpError(404, f"no dose study of patient {pseudonym}")
    extra = {"pseudonym": pseudonym, "window_years": years}
    return answer(got, f, "patient-timeline", extra=extra)


def identity(request: Request, ctx: Context) -> Response:
    """The PatientID the research PACS census gives each study of the pseudonym; `matches_pseudonym` says
    whether that PatientID gives the pseudonym again (the census and the dose objects may disagree)."""
    pseudonym = check_pseudonym(request.params["name"])
    with ctx.db() as conn:
        got = sql_patients.identity(conn, pseudonym)
    if not got:
        raise HttpError(404, f"no dose study of patient {pseudonym}")
    key = pseudonym_key(ctx.cfg)
    for r in got:
        r["matches_pseudonym"] = (
            bool(r["patient_id"]) and patient_pseudonym(key, r["patient_id"]) == pseudonym
        )
    ids = sorted({r["patient_id"] for r in got if r["matches_pseudonym"]})
    return answer(got, {}, "patient-identity", extra={"pseudonym": pseudonym, "patient_ids": ids})


def page(request: Request, ctx: Context) -> Response:
    """The page shell (templates/patients.html, filled by static/patients.js): no data, public like the others."""
    return Response.html(shell.page("patients", oidc=ctx.oidc))


PSEUDONYM_ANSWERS = {
    400: "the pseudonym is malformed, or a query parameter is unknown or malformed",
    404: "no dose study carries this pseudonym",
}

ROUTES = (
    RouteSpec(
        "GET",
        "/api/dose/patients",
        patients,
        "dose:read",
        "Patients (pseudonyms) whose effective dose over a rolling window reaches a threshold, highest first",
        query=QUERY,
        export_permission="dose:export",
        answers={400: "a query parameter is unknown or malformed"},
    ),
    RouteSpec(
        "GET",
        "/api/dose/patients/{name}",
        timeline,
        "dose:read",
        "One patient's studies with CT, NM and total effective dose, the running sum and the window sum",
        query={**WINDOW, **FORMAT},
        export_permission="dose:export",
        answers=PSEUDONYM_ANSWERS,
    ),
    RouteSpec(
        "GET",
        "/api/patients/{name}/identity",
        identity,
        "patient:reidentify",  # JSON only; audited with the studies it names
        "Re-identification: the PatientID the research PACS census gives each study of the pseudonym",
        query={
            "reason": TEXT.but(
                description="why the patient is re-identified (kept in the audit trail)", required=True
            )
        },  # fmt: skip
        answers={**PSEUDONYM_ANSWERS, 400: "the pseudonym is malformed, or 'reason' is missing"},
    ),
    RouteSpec(
        "GET", "/ui/patients", page, PUBLIC, "The patient cumulative dose page (shell)", content_type=HTML
    ),
)
