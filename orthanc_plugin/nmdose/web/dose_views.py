"""The dose page's statistics answers (`/nmdose/api/dose/...`), their per-data-version cache (web/cache.py) and
the warm-up of its opening answers.

A module of its own (not in web/pages.py) so the dose worker can be handed :func:`warm_default_views` as a
callback by the command line's glue (nmdose/cli.py): the dose stage never imports the web layer.
"""

from __future__ import annotations

from typing import Any

from nmdose.web import cache, report_views, sql_dose, sql_levels, sql_outliers


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
            acknowledged=f.get("acknowledged", "no"),  # the worklist: what is still to review (docs/web.md)
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


def dose_key(cfg: Any, route: str, f: dict[str, Any], conn: Any = None) -> str:
    """The cache key; the outliers' holds the version of their acknowledgements (read on `conn`,
    sql_outliers.ack_version), so acknowledging one is seen at once and leaves the other answers cached."""
    extra: tuple[Any, ...] = (ANSWER_COLUMNS_VERSION,)
    if route in LEVEL_ROUTES:
        extra += (sql_levels.levels_json(cfg.reference_levels.levels),)
    if route == "outliers":
        extra += (cfg.reference_levels.outliers.model_dump(), sql_outliers.ack_version(conn))
    return cache.cache_key(route, f, *extra)


def cached_dose_rows(conn, cfg: Any, route: str, f: dict[str, Any]) -> Any:
    """A JSON answer from the per-version cache (web/cache.py); exports (CSV, XLSX) are always computed."""
    if f.get("format", "json") != "json":
        return compute_dose_rows(conn, cfg, route, f)
    if route == "outliers":
        return cached_outliers(conn, cfg, f)
    return cache.cached_rows(
        conn, dose_key(cfg, route, f, conn), lambda: compute_dose_rows(conn, cfg, route, f)
    )


# The outlier list's index (sql_levels.outlier_index) is kept per version of the dose data, filters and rules,
# without the acknowledgements: acknowledging one never recomputes it. It holds the first INDEX_TOP hits of each
# reason (a page beyond them, after the acknowledged ones left out, is computed: OUTLIER_PAGE pages of the dose page
# reach it after 40 pages) and the hits per study (the counts).
INDEX_TOP = 2000
PAGE_KEYS = ("acknowledged", "limit", "offset", "reason", "format")


def index_key(cfg: Any, f: dict[str, Any]) -> str:
    """The cache key of the outlier index of the filters in `f` (its paging and list choices left out)."""
    q = {k: v for k, v in f.items() if k not in PAGE_KEYS}
    rules = cfg.reference_levels.outliers.model_dump()
    levels = sql_levels.levels_json(cfg.reference_levels.levels)
    return cache.cache_key("outlier_index", q, ANSWER_COLUMNS_VERSION, levels, rules, INDEX_TOP)


def compute_outlier_index(conn, cfg: Any, f: dict[str, Any]) -> dict[str, Any]:
    rules = cfg.reference_levels.outliers
    q = sql_dose.resolve_agent(conn, {k: v for k, v in f.items() if k not in PAGE_KEYS})
    levels = list(cfg.reference_levels.levels)
    return sql_levels.outlier_index(
        conn, q, levels, INDEX_TOP, factor=rules.factor, p95_min_n=rules.p95_min_values
    )


def cached_index(conn, cfg: Any, f: dict[str, Any]) -> dict[str, Any]:
    """The outlier index of the filters in `f`, kept decoded in this process too (web/cache.py `memo`: ~6 MB of
    JSON on a million studies); shared, never changed by its readers."""
    key = index_key(cfg, f)
    return cache.cached_rows(conn, key, lambda: compute_outlier_index(conn, cfg, f), memo=True)


def cached_outliers(conn, cfg: Any, f: dict[str, Any]) -> dict[str, Any]:
    """One page of the outlier list: the cached index with the acknowledgements read now (one small query),
    else (a page beyond the index) the whole computation, cached under the acknowledgements' version."""
    index = cached_index(conn, cfg, f)
    page = sql_outliers.page_from_index(
        index,
        sql_outliers.acks(conn),
        f.get("reason"),
        f.get("acknowledged", "no"),  # the worklist: what is still to review (docs/web.md)
        f.get("limit", 1000),
        f.get("offset", 0),
    )
    if page is not None:
        return page
    return cache.cached_rows(
        conn, dose_key(cfg, "outliers", f, conn), lambda: compute_dose_rows(conn, cfg, "outliers", f)
    )


# What the dose page asks when it opens (no filter set; the page gets this list in its page data, opening_views,
# and static/dose.js dose() sends these requests): the dose worker computes these after an ingest
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
    """Compute the dose page's opening answers into the cache, then the report page's (web/report_views.py
    `opening_views`: about as much again, bench/outlier_ack.py); returns how many were computed (not found)."""
    computed: list[str] = []
    for route, f in DEFAULT_VIEWS:

        def compute(route: str = route, f: dict[str, Any] = f) -> Any:
            computed.append(route)
            if route == "outliers":  # its index: the page and the acknowledgements are read per request
                return compute_outlier_index(conn, cfg, f)
            return compute_dose_rows(conn, cfg, route, f)

        key = index_key(cfg, f) if route == "outliers" else dose_key(cfg, route, f, conn)
        cache.cached_rows(conn, key, compute)
    return len(computed) + report_views.warm_report_views(conn, cfg)
