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

from nmdose.auth import browser_login, register_session_routes
from nmdose.db import connect
from nmdose.web import queries as Q
from nmdose.web import xlsx
from nmdose.web.dose_views import cached_dose_rows
from nmdose.web.export import to_csv
from nmdose.web.router import PUBLIC, HttpError, Request, Response, check_uid

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


def _answer(
    rows: list[dict[str, Any]],
    f: dict[str, Any],
    filename: str,
    *,
    group_by: str | None = None,
    summary=None,
    summary_title: str = "",
    extra: dict[str, Any] | None = None,
) -> Response:
    """JSON `{"rows", "count"}`, or the same rows as CSV or XLSX (`format`). For XLSX, `group_by` names the
    column whose values get a sheet each and `summary()` gives the rows of the summary sheet."""
    if f.get("format") == "csv":
        resp = Response(200, to_csv(rows).encode("utf-8-sig"), "text/csv; charset=utf-8")
        resp.headers["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return resp
    if f.get("format") == "xlsx":
        params = {k: v for k, v in f.items() if k != "format"}
        body = xlsx.workbook(
            rows,
            title=f"nmdose {filename}",
            parameters=params,
            group_by=group_by,
            summary=summary() if summary else (),
            summary_title=summary_title,
        )
        resp = Response(200, body, xlsx.CONTENT_TYPE)
        resp.headers["Content-Disposition"] = f'attachment; filename="{filename}.xlsx"'
        return resp
    return Response.json({"rows": rows, "count": len(rows), **(extra or {})})


def _redirect(location: str) -> Response:
    """302 to a location relative to the request (works behind a reverse proxy prefix)."""
    target = _e(location)
    resp = Response.html(
        f'<!doctype html><meta charset="utf-8"><p>Moved to <a href="{target}">{target}</a></p>', 302
    )
    resp.headers["Location"] = location
    return resp


def register_routes(router, plugin) -> None:
    """Add the pages, the JSON API and the static files to the plugin's router."""

    def db():
        return contextlib.closing(connect(plugin.cfg, role="web"))  # read, and the answer cache

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

    def forward_incomplete(request: Request) -> Response:
        f = _params(request, {"limit": Q._int(1, 10_000), **Q.FORMAT})
        with db() as conn:
            rows = Q.research_forward_incomplete(conn, f.get("limit", 200))
        return _answer(rows, f, "forward-incomplete")

    # ----- dose API
    def dose_rows(conn, route: str, f: dict[str, Any]) -> list[dict[str, Any]]:
        return cached_dose_rows(conn, plugin.cfg, route, f)

    def ct_protocols(request: Request) -> Response:
        f = _params(request, {**Q.DOSE_FILTERS, "group": Q._choice("protocol", "description"), **Q.FORMAT})
        group = f.get("group", "protocol")
        with db() as conn:
            return _answer(dose_rows(conn, "ct_protocols", f), f, f"ct-{group}")

    def ct_monthly(request: Request) -> Response:
        f = _params(request, {**Q.DOSE_FILTERS, **Q.FORMAT})
        with db() as conn:
            return _answer(dose_rows(conn, "ct_monthly", f), f, "ct-monthly")

    def ct_events(request: Request) -> Response:
        f = _params(request, {**Q.DOSE_FILTERS, "limit": Q._int(1, Q.MAX_LIMIT), **Q.FORMAT})
        with db() as conn:
            return _answer(
                Q.ct_events(conn, f, f.get("limit", Q.MAX_LIMIT)),
                f,
                "ct-events",
                group_by="acquisition_protocol",
                summary=lambda: Q.ct_protocols(conn, f, "protocol"),
                summary_title="CTDIvol and DLP per acquisition protocol (one value per irradiation event)",
            )

    def activity(request: Request) -> Response:
        f = _params(request, {**Q.DOSE_FILTERS, "group": Q._choice("agent", "description"), **Q.FORMAT})
        group = f.get("group", "agent")
        with db() as conn:
            return _answer(dose_rows(conn, "activity", f), f, f"activity-{group}")

    def activity_points(request: Request) -> Response:
        f = _params(request, {**Q.DOSE_FILTERS, "limit": Q._int(1, Q.MAX_LIMIT), **Q.FORMAT})
        with db() as conn:
            return _answer(
                dose_rows(conn, "activity_points", f),
                f,
                "activity-weight",
                group_by="agent",
                summary=lambda: Q.activity(conn, f, "agent"),
                summary_title="Activity per radiopharmaceutical (all filtered administrations)",
            )

    def levels() -> list:
        return list(plugin.cfg.reference_levels.levels)

    def reference_levels(request: Request) -> Response:
        f = _params(request, Q.FORMAT)
        return _answer(Q.reference_level_rows(levels()), f, "reference-levels")

    def outliers(request: Request) -> Response:
        spec = {
            **Q.DOSE_FILTERS,
            "reason": Q._choice("reference_level", "p95"),
            "limit": Q._int(1, Q.MAX_LIMIT),
            **Q.FORMAT,
        }
        f = _params(request, spec)
        with db() as conn:
            rows = dose_rows(conn, "outliers", f)
            return _answer(rows, f, "dose-outliers")

    def box(request: Request) -> Response:
        spec = {
            **Q.DOSE_FILTERS,
            "measure": Q._choice(*Q.BOX_MEASURES),
            "group": Q._choice("protocol", "description", "agent"),
            **Q.FORMAT,
        }
        f = _params(request, spec)
        if "measure" not in f:
            raise HttpError(400, f"parameter 'measure' is required (one of {', '.join(Q.BOX_MEASURES)})")
        measure = f["measure"]
        groups = Q.BOX_GROUPS[Q.BOX_MEASURES[measure][0]]
        group = f.get("group", groups[0])
        if group not in groups:
            raise HttpError(
                400, f"parameter 'group' must be one of {', '.join(groups)} for measure {measure}"
            )
        with db() as conn:
            rows = dose_rows(conn, "box", f)
            return _answer(rows, f, f"box-{measure}-{group}")

    def effective_dose(request: Request) -> Response:
        f = _params(request, {**Q.DOSE_FILTERS, **Q.FORMAT})
        with db() as conn:
            return _answer(dose_rows(conn, "effective_dose", f), f, "effective-dose")

    def dead_letter(request: Request) -> Response:
        spec = {"state": Q._choice("open", "resolved", "all"), "limit": Q._int(1, 10_000), **Q.FORMAT}
        f = _params(request, spec)
        with db() as conn:
            rows, counts = Q.dead_letters(conn, f.get("state", "open"), f.get("limit", 500))
        return _answer(rows, f, "dose-dead-letter", extra=counts)

    def orthanc_study(request: Request) -> Response:
        """302 to the study's page in Orthanc Explorer, its Orthanc ID computed from the census's PatientID
        (no call to Orthanc: a loopback HTTP call would hold one of Orthanc's HTTP threads per request); 404 with
        a page saying so when the census does not know the study."""
        _params(request, {})
        uid = check_uid(request.params["uid"])
        with db() as conn:
            patient_id = Q.study_patient_id(conn, uid)
        if patient_id is None:
            text = f"The research PACS holds no study with StudyInstanceUID {uid}."
            return Response.html(_message_page("Study not in the research PACS", text, uid=uid, depth=3), 404)
        # /nmdose/ui/orthanc/study/<uid> -> /app/explorer.html (four levels up)
        return _redirect(f"../../../../app/explorer.html#study?uuid={Q.orthanc_study_id(patient_id, uid)}")

    def dose_study(request: Request) -> Response:
        _params(request, {})
        uid = check_uid(request.params["uid"])
        with db() as conn:
            data = Q.dose_study(conn, uid)
        if data is None:
            raise HttpError(404, f"no dose record for study {uid}")
        return Response.json(data)

    # ----- pages and static files
    oidc = browser_login(plugin.cfg)

    def page(name: str):
        def handler(request: Request) -> Response:
            if "uid" in request.params:
                check_uid(request.params["uid"])
            return Response.html(render_page(name, request, oidc=oidc))

        return handler

    def index(request: Request) -> Response:
        if not request.path.endswith("/"):
            return _redirect("ui/")  # /nmdose/ui -> /nmdose/ui/: the page's relative links need the slash
        return page("index")(request)

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
        ("/api/research/forward-incomplete", forward_incomplete),
    ):
        router.add("GET", path, handler, permission="research:read")
    # format=csv|xlsx of a dose route is an export: dose:export (the router checks it before the handler).
    for path, handler in (
        ("/api/dose/ct-protocols", ct_protocols),
        ("/api/dose/ct-monthly", ct_monthly),
        ("/api/dose/ct-events", ct_events),
        ("/api/dose/activity", activity),
        ("/api/dose/activity-points", activity_points),
        ("/api/dose/reference-levels", reference_levels),
        ("/api/dose/outliers", outliers),
        ("/api/dose/box", box),
        ("/api/dose/effective-dose", effective_dose),
        ("/api/dose/dead-letter", dead_letter),
    ):
        router.add("GET", path, handler, permission="dose:read", export_permission="dose:export")
    router.add("GET", "/api/dose/study/{uid}", dose_study, permission="dose:read")  # JSON only
    # A link the user follows (the outlier list, the study page): the browser sends the session cookie, not a
    # bearer header; the answer (Orthanc's ID of the study) is derived from the PatientID, so it needs a user.
    router.add("GET", "/ui/orthanc/study/{uid}", orthanc_study, permission="dose:read")
    # The page shells hold no data (labels, and the study UID of the URL): they load without a token so that, in
    # keycloak mode, their script can log in; every /api/ route they call checks its permission.
    router.add("GET", "/ui", index, permission=PUBLIC)
    router.add("GET", "/ui/research", page("research"), permission=PUBLIC)
    router.add("GET", "/ui/dose", page("dose"), permission=PUBLIC)
    router.add("GET", "/ui/study/{uid}", page("study"), permission=PUBLIC)
    router.add("GET", "/static/{name}", static, permission=PUBLIC)
    register_session_routes(router)


# ----- HTML ----------------------------------------------------------------------------------------------

TITLES = {
    "index": "nmdose",
    "research": "Research PACS",
    "dose": "Dose",
    "study": "Study dose",
    "message": "nmdose",
}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _shell(
    name: str,
    body: str,
    *,
    data: dict[str, Any] | None = None,
    depth: int = 1,
    oidc: dict[str, str] | None = None,
) -> str:
    """The page around `body`: language toggle, navigation, scripts. `depth`: path segments below /ui/.
    `oidc`: keycloak mode's login settings, read by static/nmdose-auth.js (the shell itself holds no data)."""
    up = "../" * depth
    page_data = _e(json.dumps(data or {}, ensure_ascii=False))
    login = f'\n<meta name="nmdose-oidc" content="{_e(json.dumps(oidc))}">' if oidc else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">{login}
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
<script src="{up}static/nmdose-auth.js"></script>
<script src="{up}static/chart.umd.min.js"></script>
<script src="{up}static/nmdose.js"></script>
</body></html>
"""


def _message_page(title: str, text: str, *, uid: str | None = None, depth: int = 1) -> str:
    """A small page for an error the user reached by following a link (not a JSON API answer)."""
    back = ""
    if uid is not None:
        back = f"""<p><a href="{"../" * (depth - 1)}study/{_e(_quote(uid))}" data-i18n="msg.dose_record">
Dose record of this study</a></p>"""
    body = f"""<h1>{_e(title)}</h1>
<p id="message">{_e(text)}</p>{back}"""
    return _shell("message", body, depth=depth)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def render_page(name: str, request: Request, *, oidc: dict[str, str] | None = None) -> str:
    if name == "index":
        body = """<h1 data-i18n="index.title">nmdose</h1>
<ul>
  <li><a href="research" data-i18n="nav.research">Research PACS</a></li>
  <li><a href="dose" data-i18n="nav.dose">Dose</a></li>
  <li><a href="../../app/explorer.html" data-i18n="nav.orthanc">Orthanc Explorer</a></li>
</ul>"""
        return _shell(name, body, oidc=oidc, depth=1)
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
  <table id="failed-table" class="data"></table></section>
<section><h2 data-i18n="research.forward">Forwarding to the dose PACS not complete</h2>
  <table id="forward-table" class="data"></table></section>"""
        return _shell(name, body, oidc=oidc, depth=1)
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
  <label><span data-i18n="f.age">Age (years)</span>
    <input type="number" name="age_min" min="0" max="150" step="any" size="4" data-i18n-title="f.min">–<input
      type="number" name="age_max" min="0" max="150" step="any" size="4" data-i18n-title="f.max"></label>
  <label><span data-i18n="f.weight">Weight (kg)</span>
    <input type="number" name="weight_min" min="0" max="1000" step="any" size="4" data-i18n-title="f.min">–<input
      type="number" name="weight_max" min="0" max="1000" step="any" size="4" data-i18n-title="f.max"></label>
  <button type="submit" data-i18n="f.apply">Apply</button>
  <a id="csv-link" href="#" data-download data-i18n="f.csv">CSV (events)</a>
  <a id="xlsx-link" href="#" data-download data-i18n="f.xlsx">XLSX (events, one sheet per protocol)</a>
  <a id="xlsx-activity-link" href="#" data-download data-i18n="f.xlsx_activity">XLSX (activity, one sheet per agent)</a>
  <p id="filter-error" class="error" hidden></p>
</form>
<section><h2 data-i18n="dose.ct_protocol">CT: CTDIvol and DLP per acquisition protocol</h2>
  <p class="hint" data-i18n="dose.box_hint">Box: quartiles; line: median; whiskers: most extreme values within
  1.5 IQR. Red dashes: reference levels.</p>
  <div class="chart"><canvas id="ct-chart"></canvas></div>
  <table id="ct-table" class="data"></table></section>
<section><h2 data-i18n="dose.ct_description">CT: per study description (per study)</h2>
  <div class="chart"><canvas id="ct-desc-chart"></canvas></div>
  <table id="ct-desc-table" class="data"></table></section>
<section><h2 data-i18n="dose.monthly">Monthly median DLP</h2>
  <div class="chart"><canvas id="monthly-chart"></canvas></div></section>
<section><h2 data-i18n="dose.activity">Administered activity per radiopharmaceutical</h2>
  <div class="chart"><canvas id="activity-chart"></canvas></div>
  <table id="activity-table" class="data"></table>
  <div class="chart"><canvas id="scatter-chart"></canvas></div></section>
<section><h2 data-i18n="dose.effective">Effective dose per exam (per study)</h2>
  <table id="effective-table" class="data"></table></section>
<section><h2><span data-i18n="dose.outliers">Outliers</span> (<span id="outlier-count">…</span>)</h2>
  <p class="hint" data-i18n="dose.outliers_hint">Above a reference level that applies, or above the 95th
  percentile of their protocol or agent in the filtered data.</p>
  <table id="outlier-table" class="data"></table></section>
<section><h2 data-i18n="dose.levels">Reference levels</h2>
  <table id="levels-table" class="data"></table></section>
<section><h2><span data-i18n="dose.dead_letter">Dose files that failed</span>
  (<span id="dead-letter-count">…</span>)</h2>
  <table id="dead-letter-table" class="data"></table></section>"""
        return _shell(name, body, oidc=oidc, depth=1)
    if name == "study":
        uid = request.params["uid"]
        body = f"""<h1><span data-i18n="study.title">Study dose</span>: <code>{_e(uid)}</code></h1>
<p><a id="orthanc-link" hidden data-i18n="study.open">Open in Orthanc Explorer</a></p>
<table id="study-table" class="data"></table>
<h2 data-i18n="study.effective">Effective dose: values, coefficients and their sources</h2>
<table id="study-effective-table" class="data"></table>
<h2 data-i18n="study.ct">CT irradiation events</h2><table id="events-table" class="data"></table>
<h2 data-i18n="study.nm">Radiopharmaceutical administrations</h2><table id="admin-table" class="data"></table>
<h2 data-i18n="study.objects">Source objects</h2><table id="objects-table" class="data"></table>"""
        return _shell(name, body, oidc=oidc, data={"uid": uid}, depth=2)
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
