"""The web pages and JSON API of the research PACS: `/nmdose/ui/...`, `/nmdose/api/...`, `/nmdose/static/...`.

Pages are small server-rendered shells (every PACS-provided string through :func:`html.escape`); the tables and
charts are filled by `static/nmdose.js` from the JSON API (DOM text only, never innerHTML), with Chart.js
vendored next to it so the pages work on a hospital network with no internet.
"""

from __future__ import annotations

import contextlib
import html
import json
from pathlib import Path
from typing import Any

from nmdose.db import connect
from nmdose.web import queries as Q
from nmdose.web.router import PUBLIC, HttpError, Request, Response

STATIC_DIR = Path(__file__).parent / "static"
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def _params(request: Request, spec: dict[str, Any]) -> dict[str, Any]:
    try:
        return Q.parse_params(request.query, spec)
    except Q.ParamError as exc:
        raise HttpError(400, str(exc)) from None


def _answer(rows: list[dict[str, Any]], f: dict[str, Any], filename: str) -> Response:
    if f.get("format") == "csv":
        resp = Response(200, Q.to_csv(rows).encode("utf-8-sig"), "text/csv; charset=utf-8")
        resp.headers["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return resp
    return Response.json({"rows": rows, "count": len(rows)})


def register_routes(router, plugin) -> None:
    """Add the pages, the JSON API and the static files to the plugin's router."""

    def db():
        return contextlib.closing(connect(plugin.cfg))

    # ----- research API
    def yearly(request: Request) -> Response:
        f = _params(request, {**Q.YEARS, **Q.FORMAT})
        with db() as conn:
            return _answer(Q.research_yearly(conn, f), f, "research-yearly")

    def corrections(request: Request) -> Response:
        f = _params(request, Q.FORMAT)
        with db() as conn:
            return _answer(Q.research_corrections(conn), f, "modality-corrections")

    def new_descriptions(request: Request) -> Response:
        from nmdose.census.descriptions import list_descriptions

        f = _params(request, Q.FORMAT)
        with db() as conn:
            rows = list_descriptions(conn, plugin.cfg, only_new=True)
        for row in rows:
            row["modality_sets"] = "; ".join(f"{k}: {v}" for k, v in row.get("modality_sets", {}).items())
        return _answer(rows, f, "new-descriptions")

    def failed(request: Request) -> Response:
        f = _params(request, {"limit": Q._int(1, 10_000), **Q.FORMAT})
        with db() as conn:
            return _answer(Q.research_failed(conn, f.get("limit", 200)), f, "failed-retrievals")

    # ----- dose API
    def ct_protocols(request: Request) -> Response:
        f = _params(request, {**Q.DOSE_FILTERS, "group": Q._choice("protocol", "description"), **Q.FORMAT})
        group = f.get("group", "protocol")
        with db() as conn:
            return _answer(Q.ct_protocols(conn, f, group), f, f"ct-{group}")

    def ct_monthly(request: Request) -> Response:
        f = _params(request, {**Q.DOSE_FILTERS, **Q.FORMAT})
        with db() as conn:
            return _answer(Q.ct_monthly(conn, f), f, "ct-monthly")

    def ct_events(request: Request) -> Response:
        f = _params(request, {**Q.DOSE_FILTERS, "limit": Q._int(1, Q.MAX_LIMIT), **Q.FORMAT})
        with db() as conn:
            return _answer(Q.ct_events(conn, f, f.get("limit", Q.MAX_LIMIT)), f, "ct-events")

    def activity(request: Request) -> Response:
        f = _params(request, {**Q.DOSE_FILTERS, "group": Q._choice("agent", "description"), **Q.FORMAT})
        group = f.get("group", "agent")
        with db() as conn:
            return _answer(Q.activity(conn, f, group), f, f"activity-{group}")

    def activity_points(request: Request) -> Response:
        f = _params(request, {**Q.DOSE_FILTERS, "limit": Q._int(1, Q.MAX_LIMIT), **Q.FORMAT})
        with db() as conn:
            return _answer(Q.activity_points(conn, f, f.get("limit", 5000)), f, "activity-weight")

    def dose_study(request: Request) -> Response:
        _params(request, {})
        uid = request.params["uid"]
        with db() as conn:
            data = Q.dose_study(conn, uid)
        if data is None:
            raise HttpError(404, f"no dose record for study {uid}")
        return Response.json(data)

    # ----- pages and static files
    def page(name: str):
        def handler(request: Request) -> Response:
            return Response.html(render_page(name, request))

        return handler

    def static(request: Request) -> Response:
        name = request.params["name"]
        path = STATIC_DIR / name
        ctype = CONTENT_TYPES.get(path.suffix)
        if name.startswith(".") or ctype is None or not path.is_file():
            raise HttpError(404, f"no such static file: {name}")
        resp = Response(200, path.read_bytes(), ctype)
        resp.headers["Cache-Control"] = "max-age=3600"
        return resp

    for path, handler in (
        ("/api/research/yearly", yearly),
        ("/api/research/corrections", corrections),
        ("/api/research/descriptions/new", new_descriptions),
        ("/api/research/failed", failed),
    ):
        router.add("GET", path, handler, permission="research:read")
    for path, handler in (
        ("/api/dose/ct-protocols", ct_protocols),
        ("/api/dose/ct-monthly", ct_monthly),
        ("/api/dose/ct-events", ct_events),
        ("/api/dose/activity", activity),
        ("/api/dose/activity-points", activity_points),
        ("/api/dose/study/{uid}", dose_study),
    ):
        router.add("GET", path, handler, permission="dose:read")
    router.add("GET", "/ui", page("index"), permission="research:read")
    router.add("GET", "/ui/research", page("research"), permission="research:read")
    router.add("GET", "/ui/dose", page("dose"), permission="dose:read")
    router.add("GET", "/ui/study/{uid}", page("study"), permission="dose:read")
    router.add("GET", "/static/{name}", static, permission=PUBLIC)


# ----- HTML ----------------------------------------------------------------------------------------------

TITLES = {"index": "nmdose", "research": "Research PACS", "dose": "Dose", "study": "Study dose"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _shell(name: str, body: str, *, data: dict[str, Any] | None = None, depth: int = 1) -> str:
    """The page around `body`: language toggle, navigation, scripts. `depth`: path segments below /ui/."""
    up = "../" * depth
    page_data = _e(json.dumps(data or {}, ensure_ascii=False))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(TITLES[name])} · nmdose</title>
<link rel="stylesheet" href="{up}static/nmdose.css">
</head>
<body data-page="{_e(name)}" data-page-data="{page_data}" data-root="{up}">
<header><nav>
  <a href="{up}ui/" data-i18n="nav.home">Home</a>
  <a href="{up}ui/research" data-i18n="nav.research">Research PACS</a>
  <a href="{up}ui/dose" data-i18n="nav.dose">Dose</a>
  <a href="{up}../app/explorer.html" data-i18n="nav.orthanc">Orthanc Explorer</a>
</nav>
<button type="button" id="lang-toggle" data-i18n="lang.toggle">한국어</button></header>
<main>
{body}
</main>
<script src="{up}static/chart.umd.min.js"></script>
<script src="{up}static/nmdose.js"></script>
</body></html>
"""


def render_page(name: str, request: Request) -> str:
    if name == "index":
        body = """<h1 data-i18n="index.title">nmdose</h1>
<ul>
  <li><a href="research" data-i18n="nav.research">Research PACS</a></li>
  <li><a href="dose" data-i18n="nav.dose">Dose</a></li>
</ul>"""
        return _shell(name, body, depth=1)
    if name == "research":
        body = """<h1 data-i18n="research.title">Research PACS: studies per year</h1>
<section id="progress"><h2 data-i18n="research.progress">Progress</h2>
  <p><span data-i18n="research.census">Census</span>: <span id="census-status">…</span></p>
  <p><span data-i18n="research.retrieve">Retrieval</span>: <span id="retrieve-status">…</span></p></section>
<section><h2 data-i18n="research.yearly">Studies per year and exam type</h2>
  <div class="chart"><canvas id="yearly-chart"></canvas></div>
  <table id="yearly-table" class="data"></table></section>
<section><h2 data-i18n="research.new">New descriptions waiting for acceptance</h2>
  <table id="new-table" class="data"></table></section>
<section><h2 data-i18n="research.corrections">Modality corrections</h2>
  <table id="corrections-table" class="data"></table></section>
<section><h2 data-i18n="research.failed">Failed retrievals</h2>
  <table id="failed-table" class="data"></table></section>"""
        return _shell(name, body, depth=1)
    if name == "dose":
        body = """<h1 data-i18n="dose.title">Dose by protocol</h1>
<form id="filters">
  <label><span data-i18n="f.from">From</span> <input type="date" name="from"></label>
  <label><span data-i18n="f.to">To</span> <input type="date" name="to"></label>
  <label><span data-i18n="f.protocol">Protocol</span> <input name="protocol"></label>
  <label><span data-i18n="f.description">Description</span> <input name="description"></label>
  <label><span data-i18n="f.station">Station</span> <input name="station"></label>
  <label><span data-i18n="f.modality">Modality</span> <input name="modality" size="4"></label>
  <label><span data-i18n="f.agent">Radiopharmaceutical</span> <input name="agent"></label>
  <label><span data-i18n="f.sex">Sex</span> <select name="sex"><option value=""></option>
    <option>M</option><option>F</option><option>O</option></select></label>
  <button type="submit" data-i18n="f.apply">Apply</button>
  <a id="csv-link" href="#" data-i18n="f.csv">CSV (events)</a>
</form>
<section><h2 data-i18n="dose.ct_protocol">CT: CTDIvol and DLP per acquisition protocol</h2>
  <div class="chart"><canvas id="ct-chart"></canvas></div>
  <table id="ct-table" class="data"></table></section>
<section><h2 data-i18n="dose.ct_description">CT: per study description (per study)</h2>
  <table id="ct-desc-table" class="data"></table></section>
<section><h2 data-i18n="dose.monthly">Monthly median DLP</h2>
  <div class="chart"><canvas id="monthly-chart"></canvas></div></section>
<section><h2 data-i18n="dose.activity">Administered activity per radiopharmaceutical</h2>
  <table id="activity-table" class="data"></table>
  <div class="chart"><canvas id="scatter-chart"></canvas></div></section>"""
        return _shell(name, body, depth=1)
    if name == "study":
        uid = request.params["uid"]
        body = f"""<h1><span data-i18n="study.title">Study dose</span>: <code>{_e(uid)}</code></h1>
<p><a id="orthanc-link" hidden data-i18n="study.open">Open in Orthanc Explorer</a></p>
<table id="study-table" class="data"></table>
<h2 data-i18n="study.ct">CT irradiation events</h2><table id="events-table" class="data"></table>
<h2 data-i18n="study.nm">Radiopharmaceutical administrations</h2><table id="admin-table" class="data"></table>
<h2 data-i18n="study.objects">Source objects</h2><table id="objects-table" class="data"></table>"""
        return _shell(name, body, data={"uid": uid}, depth=2)
    raise HttpError(404, f"no such page: {name}")


def orthanc_explorer_js() -> str:
    """JavaScript for `orthanc.ExtendOrthancExplorer`: a "nmdose" button on the home page and a "dose for this
    study" button on a study's page (Orthanc Explorer 1, jQuery Mobile; paths relative to /app/)."""
    return """
$('#lookup').live('pagebeforecreate', function() {
  if ($('#nmdose-home').length) return;
  var b = $('<a>').attr({id: 'nmdose-home', 'data-role': 'button', href: '../nmdose/ui/', 'data-ajax': 'false',
                         rel: 'external', 'data-icon': 'grid'}).text('nmdose');
  $('#lookup').find('[data-role="content"]').prepend(b);
});
$('#study').live('pagebeforecreate', function() {
  if ($('#nmdose-study-dose').length) return;
  var b = $('<a>').attr({id: 'nmdose-study-dose', 'data-role': 'button', href: '#', 'data-icon': 'info'})
                  .text('dose for this study');
  b.insertBefore($('#study-delete').parent().parent());
  b.click(function() {
    if (!$.mobile.pageData) return false;
    $.ajax({url: '../studies/' + $.mobile.pageData.uuid, dataType: 'json', success: function(s) {
      window.open('../nmdose/ui/study/' + encodeURIComponent(s.MainDicomTags.StudyInstanceUID));
    }});
    return false;
  });
});
"""
