"""The report page's answers (`/nmdose/api/dose/report/...`, web/routes_reports.py): computed by PostgreSQL, kept
per version of the dose data (web/cache.py), and the warm-up of the answers the page asks for when it opens
(:func:`warm_report_views`, run by the dose worker after new data with the dose page's, web/dose_views.py).

A module of its own, below the route table, so the warm-up (handed to the dose worker by nmdose/cli.py) computes
and keys an answer exactly as a request does."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from nmdose.web import cache, names, sql_dose, sql_levels, sql_reports

# Part of every cache key: raised when the columns of an answer change.
ANSWER_VERSION = 1
# The measure of a route's answer when the request names none.
DEFAULT_MEASURE = {"levels": "ctdivol", "trends": "dlp", "histogram": "ctdivol"}

UNITS = {"ctdivol_mgy": "mGy", "dlp_mgycm": "mGy·cm", "activity_mbq": "MBq", "activity_mbq_per_kg": "MBq/kg"}
LEVEL_FIELDS = (
    "name",
    "quantity",
    "per",
    "value",
    "status",
    "source",
    "year",
    "age_min",
    "age_max",
    "conditional",
)
# The annual report's comparison tables: (measure, group), as a physicist reads them against national DRLs.
ANNUAL_COMPARISONS = (
    ("ctdivol", "protocol"),
    ("dlp", "description"),
    ("activity", "agent"),
    ("per_kg", "agent"),
)


def measure_group(f: dict[str, Any], route: str) -> tuple[str, str]:
    """The measure and the group of a request (their defaults when absent); the group is not checked here."""
    measure = f.get("measure", DEFAULT_MEASURE[route])
    return measure, f.get("group", sql_reports.groups_of(measure)[0])


def display(rows: list[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    """Rows grouped by agent: the agent as people write it in `group`, the stored text in `group_code_meaning`."""
    if group != "agent":
        return rows
    return [{**r, "group": names.agent_name(r["group"]) or r["group"], "group_code_meaning": r["group"]}
            for r in rows]  # fmt: skip


def annual_data(conn, levels: list[Any], year: int) -> dict[str, Any]:
    """The annual report of `year`: the reference-level comparisons, CT statistics per acquisition protocol,
    activity per agent, the workload."""
    f = {"from": dt.date(year, 1, 1), "to": dt.date(year, 12, 31)}
    comparison = []
    for measure, group in ANNUAL_COMPARISONS:
        comparison += display(sql_reports.level_comparison(conn, f, levels, measure, group), group)
    return {
        "levels": comparison,
        "protocols": sql_dose.ct_protocols(conn, f, "protocol"),
        "agents": names.display_rows(sql_dose.activity(conn, f, "agent")),
        "workload": sql_reports.workload(conn, f),
    }


def size_part(conn, levels: list[Any], f: dict[str, Any], kind: str, group: str) -> dict[str, Any]:
    """One kind (CT, NM) of the patient-size answer: its groups with their counts and the reference levels whose
    patterns match the group's name; its points as rows of the answer."""
    top, limit = f.get("top", 8), f.get("limit", 300)
    got = sql_reports.patient_size(conn, f, kind, group, top, limit)
    found = sql_reports.size_levels(conn, levels, kind, group, [g["group"] for g in got["groups"]])
    for g in got["groups"]:
        g["kind"] = kind
        g["levels"] = [
            {**{k: lv[k] for k in LEVEL_FIELDS}, "unit": UNITS[lv["quantity"]]}
            for lv in found
            if lv["group"] == g["group"]
        ]
    points = []
    for p in got["points"]:
        measures = {"ctdivol_mgy": p["y1"], "dlp_mgycm": p["y2"], "activity_mbq": None}
        if kind == "NM":
            measures = {"ctdivol_mgy": None, "dlp_mgycm": None, "activity_mbq": p["y1"]}
        points.append({"kind": kind, "group": p["group"], "study_instance_uid": p["study_instance_uid"],
                       "weight_kg": p["weight_kg"], **measures})  # fmt: skip
    if kind == "NM":  # agents as people write them, the stored text beside
        for r in (*got["groups"], *points):
            r["group_code_meaning"] = r["group"]
            r["group"] = names.agent_name(r["group"]) or r["group"]
    part = {k: got[k] for k in ("groups", "groups_total", "no_weight_studies")}
    return {**part, "group": group, "points": points}


def compute(conn, cfg: Any, route: str, f: dict[str, Any]) -> Any:
    """The answer of one report route (`levels`, `trends`, `histogram`, `workload`, `annual`, `patient_size`)
    for validated parameters `f`."""
    levels = list(cfg.reference_levels.levels)
    if route == "annual":
        return annual_data(conn, levels, f["year"])
    q = sql_dose.resolve_agent(conn, f)  # the agent filter: the raw text or its display name (web/names.py)
    if route == "workload":
        return sql_reports.workload(conn, q)
    if route == "patient_size":
        group = f.get("group", "protocol")
        return {
            "ct": size_part(conn, levels, q, "CT", group),
            "nm": size_part(conn, levels, q, "NM", "agent"),
        }
    measure, group = measure_group(f, route)
    if route == "levels":
        return display(sql_reports.level_comparison(conn, q, levels, measure, group), group)
    if route == "trends":
        got, periods = sql_reports.trends(conn, q, measure, group, f.get("period", "month"), f.get("top", 5))
        return {"rows": display(got, group), "periods": periods}
    if route == "histogram":
        got = sql_reports.histogram(conn, q, measure, group, f.get("bins", 20), f.get("top", 4))
        return display(got, group)
    raise ValueError(f"not a report route: {route}")


def report_key(cfg: Any, route: str, f: dict[str, Any]) -> str:
    """The cache key: the route, its parameters, the reference levels' JSON."""
    levels = sql_levels.levels_json(cfg.reference_levels.levels)
    return cache.cache_key(f"report_{route}", f, ANSWER_VERSION, levels)


def cached(conn, cfg: Any, route: str, f: dict[str, Any]) -> Any:
    """A JSON answer from the per-version cache; exports (CSV, XLSX) are always computed."""
    if f.get("format", "json") != "json":
        return compute(conn, cfg, route, f)
    return cache.cached_rows(conn, report_key(cfg, route, f), lambda: compute(conn, cfg, route, f))


def opening_views(today: dt.date | None = None) -> tuple[tuple[str, dict[str, Any]], ...]:
    """What static/report.js asks when the page opens (its form's defaults: measure CTDIvol, no group, trend per
    month; the annual report of last year), as (route, validated parameters)."""
    year = (today or dt.date.today()).year - 1
    return (
        ("levels", {"measure": "ctdivol"}),
        ("trends", {"measure": "ctdivol", "period": "month"}),
        ("histogram", {"measure": "ctdivol"}),
        ("patient_size", {}),
        ("workload", {}),
        ("annual", {"year": year}),
    )


# The report page is opened now and then (a monthly look, the annual report), the dose page every day: its
# opening answers (about as costly again as the dose page's: 14.7 s on 1 M studies) are warmed at most once per
# REPORT_WARM_INTERVAL_S, not after every ingest; in between, its first request computes them (0.3-2.5 s there).
REPORT_WARM_INTERVAL_S = 15 * 60.0
_last_warm: dict[tuple[str, int, str, str], float] = {}  # per database (and var dir): last warmed when


def warm_report_views(conn, cfg: Any, *, now: float | None = None) -> int:
    """Compute the report page's opening answers into the cache, at most once per REPORT_WARM_INTERVAL_S in this
    process; returns how many were computed (not found)."""
    now = time.monotonic() if now is None else now
    pg = cfg.postgresql
    database = (pg.host, pg.port, pg.database, str(getattr(cfg, "var_dir", "")))
    if now - _last_warm.get(database, -1e12) < REPORT_WARM_INTERVAL_S:
        return 0
    _last_warm[database] = now
    computed = 0
    for route, f in opening_views():

        def work(route: str = route, f: dict[str, Any] = f) -> Any:
            nonlocal computed
            computed += 1
            return compute(conn, cfg, route, f)

        cache.cached_rows(conn, report_key(cfg, route, f), work)
    return computed
