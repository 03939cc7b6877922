"""The dose page's statistics answers (`/nmdose/api/dose/...`), their per-data-version cache (web/cache.py) and
the warm-up of its opening answers.

A module of its own (not in web/pages.py) so the dose worker can be handed :func:`warm_default_views` as a
callback by the command line's glue (nmdose/cli.py): the dose stage never imports the web layer.
"""

from __future__ import annotations

from typing import Any

from nmdose.web import cache
from nmdose.web import queries as Q


def compute_dose_rows(conn, cfg: Any, route: str, f: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one dose statistics route for validated parameters `f` (computed by PostgreSQL)."""
    levels = list(cfg.reference_levels.levels)
    if route == "ct_protocols":
        return Q.ct_protocols(conn, f, f.get("group", "protocol"))
    if route == "ct_monthly":
        return Q.ct_monthly(conn, f)
    if route == "activity":
        return Q.activity(conn, f, f.get("group", "agent"))
    if route == "activity_points":
        return Q.activity_points(conn, f, f.get("limit", 5000))
    if route == "outliers":
        return Q.outliers(conn, f, levels, f.get("limit", 1000))
    if route == "box":
        measure = f["measure"]
        return Q.box(conn, f, levels, measure, f.get("group", Q.BOX_GROUPS[Q.BOX_MEASURES[measure][0]][0]))
    if route == "effective_dose":
        return Q.effective_dose(conn, f)
    raise ValueError(f"not a dose statistics route: {route}")


# Routes whose answer depends on the configured reference levels (part of their cache key).
LEVEL_ROUTES = frozenset({"box", "outliers"})


def dose_key(cfg: Any, route: str, f: dict[str, Any]) -> str:
    extra = (Q.levels_json(cfg.reference_levels.levels),) if route in LEVEL_ROUTES else ()
    return cache.cache_key(route, f, *extra)


def cached_dose_rows(conn, cfg: Any, route: str, f: dict[str, Any]) -> list[dict[str, Any]]:
    """A JSON answer from the per-version cache (web/cache.py); exports (CSV, XLSX) are always computed."""
    if f.get("format", "json") != "json":
        return compute_dose_rows(conn, cfg, route, f)
    return cache.cached_rows(conn, dose_key(cfg, route, f), lambda: compute_dose_rows(conn, cfg, route, f))


# What the dose page asks when it opens (static/nmdose.js dose(), no filter set): the dose worker computes these
# after an ingest (warm_default_views), so the first visit after new data finds them ready.
DEFAULT_VIEWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ct_protocols", {"group": "protocol"}),
    ("box", {"measure": "ctdivol", "group": "protocol"}),
    ("box", {"measure": "dlp", "group": "protocol"}),
    ("ct_protocols", {"group": "description"}),
    ("box", {"measure": "ctdivol", "group": "description"}),
    ("box", {"measure": "dlp", "group": "description"}),
    ("ct_monthly", {}),
    ("activity", {"group": "agent"}),
    ("box", {"measure": "activity", "group": "agent"}),
    ("box", {"measure": "per_kg", "group": "agent"}),
    ("activity_points", {}),
    ("effective_dose", {}),
    ("outliers", {}),
)


def warm_default_views(conn, cfg: Any) -> int:
    """Compute the dose page's opening answers into the cache; returns how many were computed (not found)."""
    computed: list[str] = []
    for route, f in DEFAULT_VIEWS:

        def compute(route: str = route, f: dict[str, Any] = f) -> list[dict[str, Any]]:
            computed.append(route)
            return compute_dose_rows(conn, cfg, route, f)

        cache.cached_rows(conn, dose_key(cfg, route, f), compute)
    return len(computed)
