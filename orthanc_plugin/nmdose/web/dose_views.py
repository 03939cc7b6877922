"""The dose page's statistics answers (`/nmdose/api/dose/...`), their per-data-version cache (web/cache.py) and
the warm-up of its opening answers.

A module of its own (not in web/pages.py) so the dose worker can be handed :func:`warm_default_views` as a
callback by the command line's glue (nmdose/cli.py): the dose stage never imports the web layer.
"""

from __future__ import annotations

from typing import Any

from nmdose.web import cache, sql_dose, sql_levels


def box_groups(measure: str) -> tuple[str, ...]:
    """The groups a box plot of `measure` may have, the default first."""
    return sql_dose.BOX_GROUPS[sql_dose.BOX_MEASURES[measure][0]]


def compute_dose_rows(conn, cfg: Any, route: str, f: dict[str, Any]) -> Any:
    """The rows of one dose statistics route for validated parameters `f` (computed by PostgreSQL); for
    `outliers` a dict: the page of rows, the total and the counts per reason."""
    levels = list(cfg.reference_levels.levels)
    f = sql_dose.resolve_agent(conn, f)  # the agent filter: the raw text or its display name (web/names.py)
    if route == "ct_protocols":
        return sql_dose.ct_protocols(conn, f, f.get("group", "protocol"))
    if route == "ct_monthly":
        return sql_dose.ct_monthly(conn, f)
    if route == "activity":
        return sql_dose.activity(conn, f, f.get("group", "agent"))
    if route == "activity_points":
        return sql_dose.activity_points(conn, f, f.get("limit", 5000))
    if route == "outliers":
        rules = cfg.reference_levels.outliers
        return sql_levels.outliers(
            conn,
            f,
            levels,
            f.get("limit", 1000),
            offset=f.get("offset", 0),
            factor=rules.factor,
            p95_min_n=rules.p95_min_values,
        )
    if route == "box":
        measure = f["measure"]
        return sql_dose.box(conn, f, levels, measure, f.get("group", box_groups(measure)[0]))
    if route == "effective_dose":
        return sql_dose.effective_dose(conn, f)
    raise ValueError(f"not a dose statistics route: {route}")


# Routes whose answer depends on the configured reference levels (part of their cache key).
LEVEL_ROUTES = frozenset({"box", "outliers"})
# Part of every key: raised when the columns of an answer change (issue 16: SSDE, plausibility warnings, display
# names), so an answer kept before an upgrade is not served until the next dose write. 3: the text filters match
# part of the text, any case (issue 19), so an answer kept for a filter under the exact match is not served.
# 4: `standard_name` in the activity points (issue 16 item 1, docs/standard_names.md).
ANSWER_COLUMNS_VERSION = 4


def dose_key(cfg: Any, route: str, f: dict[str, Any]) -> str:
    extra: tuple[Any, ...] = (ANSWER_COLUMNS_VERSION,)
    if route in LEVEL_ROUTES:
        extra += (sql_levels.levels_json(cfg.reference_levels.levels),)
    if route == "outliers":
        extra += (cfg.reference_levels.outliers.model_dump(),)
    return cache.cache_key(route, f, *extra)


def cached_dose_rows(conn, cfg: Any, route: str, f: dict[str, Any]) -> Any:
    """A JSON answer from the per-version cache (web/cache.py); exports (CSV, XLSX) are always computed."""
    if f.get("format", "json") != "json":
        return compute_dose_rows(conn, cfg, route, f)
    return cache.cached_rows(conn, dose_key(cfg, route, f), lambda: compute_dose_rows(conn, cfg, route, f))


# What the dose page asks when it opens (no filter set; the page gets this list in its page data, opening_views,
# and static/nmdose.js dose() sends these requests): the dose worker computes these after an ingest
# (warm_default_views), so the first visit after new data finds them ready. (route, parameters); the route's
# path is view_path(route).
OUTLIER_PAGE = 50  # rows per page of the dose page's outlier table
DEFAULT_VIEWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ct_protocols", {"group": "protocol"}),
    ("box", {"measure": "ctdivol", "group": "protocol"}),
    ("box", {"measure": "dlp", "group": "protocol"}),
    ("ct_protocols", {"group": "description"}),
    ("box", {"measure": "ctdivol", "group": "description"}),
    ("box", {"measure": "dlp", "group": "description"}),
    # the section per standard name (docs/standard_names.md)
    ("ct_protocols", {"group": "standard_name"}),
    ("box", {"measure": "ctdivol", "group": "standard_name"}),
    ("box", {"measure": "dlp", "group": "standard_name"}),
    ("activity", {"group": "standard_name"}),
    ("ct_monthly", {}),
    ("activity", {"group": "agent"}),
    ("box", {"measure": "activity", "group": "agent"}),
    ("box", {"measure": "per_kg", "group": "agent"}),
    ("activity_points", {}),
    ("effective_dose", {}),
    ("outliers", {"limit": OUTLIER_PAGE}),
)


def view_path(route: str) -> str:
    """The path below /nmdose of a dose statistics route: `ct_protocols` -> `/api/dose/ct-protocols`."""
    return "/api/dose/" + route.replace("_", "-")


def opening_views() -> list[dict[str, Any]]:
    """DEFAULT_VIEWS as the dose page's data: the path of each request (below /nmdose/api/, as static/nmdose.js
    api() takes it) and its parameters."""
    return [{"path": view_path(route).removeprefix("/api/"), "params": dict(f)} for route, f in DEFAULT_VIEWS]


def warm_default_views(conn, cfg: Any) -> int:
    """Compute the dose page's opening answers into the cache; returns how many were computed (not found)."""
    computed: list[str] = []
    for route, f in DEFAULT_VIEWS:

        def compute(route: str = route, f: dict[str, Any] = f) -> Any:
            computed.append(route)
            return compute_dose_rows(conn, cfg, route, f)

        cache.cached_rows(conn, dose_key(cfg, route, f), compute)
    return len(computed)
