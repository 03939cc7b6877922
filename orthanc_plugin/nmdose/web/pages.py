"""The web pages and JSON API of the research PACS: `/nmdose/ui/...`, `/nmdose/api/...`, `/nmdose/static/...`.

This module is the plugin's web stage (nmdose/plugin.py): it registers the route tables of web/routes_research.py
(the research page's API), web/routes_dose.py (the dose page's API) and web/routes_pages.py (the page shells,
web/shell.py + templates/, and the static files: each page's script on the shared `static/nmdose.js` fills the
tables and charts from the JSON API, with Chart.js vendored next to it so the pages work on a hospital network
with no internet).
"""

from __future__ import annotations

import contextlib

from nmdose.auth import browser_login, register_session_routes
from nmdose.db import connect
from nmdose.web import (
    routes_alerts,
    routes_dose,
    routes_names,
    routes_outliers,
    routes_pages,
    routes_patients,
    routes_projects,
    routes_pseudo,
    routes_reports,
    routes_research,
    routes_scanners,
    routes_viewer,
)
from nmdose.web.routes import Context, RouteSpec, register
from nmdose.web.shell import orthanc_explorer_js

__all__ = ["ROUTES", "orthanc_explorer_js", "register_routes"]

ROUTES: tuple[RouteSpec, ...] = (
    *routes_research.ROUTES,
    *routes_dose.ROUTES,
    *routes_outliers.ROUTES,
    *routes_names.ROUTES,
    *routes_patients.ROUTES,
    *routes_alerts.ROUTES,
    *routes_projects.ROUTES,
    *routes_pseudo.ROUTES,
    *routes_pages.ROUTES,
    *routes_reports.ROUTES,
    *routes_scanners.ROUTES,
    *routes_viewer.ROUTES,
)


def register_routes(router, plugin) -> None:
    """Add the pages, the JSON API and the static files to the plugin's router."""

    def db():
        return contextlib.closing(connect(plugin.cfg, role="web"))  # read, and the answer cache

    register(router, ROUTES, Context(plugin.cfg, db, oidc=browser_login(plugin.cfg)))
    register_session_routes(router)
