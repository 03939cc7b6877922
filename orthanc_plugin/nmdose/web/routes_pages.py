"""The pages (`/nmdose/ui/...`), the Orthanc Explorer link of a study and the static files (`/nmdose/static/...`):
one small handler per route, and their table.

The page shells hold no data (labels, and the study UID of the URL): they load without a token so that, in
keycloak mode, their script can log in; every /api/ route they call checks its permission. They read no query
(`query=None`): the OIDC login returns to a page with `?code=&state=`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from nmdose.orthanc_ids import orthanc_study_id
from nmdose.web import shell
from nmdose.web.dose_views import opening_views
from nmdose.web.router import PUBLIC, HttpError, Request, Response, check_uid
from nmdose.web.routes import HTML, Context, RouteSpec
from nmdose.web.sql_dose import study_patient_id

STATIC_DIR = Path(__file__).parent / "static"
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def redirect(location: str) -> Response:
    """302 to a location relative to the request (works behind a reverse proxy prefix)."""
    resp = Response.html(shell.moved(location), 302)
    resp.headers["Location"] = location
    return resp


def index(request: Request, ctx: Context) -> Response:
    """The index page, at /nmdose/ui/index (a name, so its relative links work whatever the address typed)."""
    return Response.html(shell.page("index", oidc=ctx.oidc))


def ui_root(request: Request, ctx: Context) -> Response:
    """/nmdose/ui and /nmdose/ui/ (Orthanc hands both over as /ui): 302 to `index`. From /nmdose/ui/ that is
    /nmdose/ui/index; from /nmdose/ui it is /nmdose/index, which sends on to ui/index (the route below)."""
    return redirect("index")


def root_index(request: Request, ctx: Context) -> Response:
    """/nmdose/index: 302 to ui/index (where /nmdose/ui, without the slash, lands first)."""
    return redirect("ui/index")


def research(request: Request, ctx: Context) -> Response:
    return Response.html(shell.page("research", oidc=ctx.oidc))


def dose(request: Request, ctx: Context) -> Response:
    """The dose page, its opening requests (DEFAULT_VIEWS, which the dose worker keeps warm) and the outlier rules
    (shown before the list arrives) in its data."""
    data: dict = {"views": opening_views()}
    rules = getattr(getattr(ctx.cfg, "reference_levels", None), "outliers", None)
    if rules is not None:
        data["outliers"] = {"factor": rules.factor, "p95_min_values": rules.p95_min_values}
    return Response.html(shell.page("dose", data=data, oidc=ctx.oidc))


def study(request: Request, ctx: Context) -> Response:
    return Response.html(shell.page("study", uid=check_uid(request.params["uid"]), oidc=ctx.oidc))


def orthanc_study(request: Request, ctx: Context) -> Response:
    """302 to the study's page in Orthanc Explorer, its Orthanc ID computed from the census's PatientID (no call
    to Orthanc: a loopback HTTP call would hold one of Orthanc's HTTP threads per request); 404 with a page
    saying so when the census does not know the study."""
    uid = check_uid(request.params["uid"])
    with ctx.db() as conn:
        patient_id = study_patient_id(conn, uid)
    if patient_id is None:
        text = f"The research PACS holds no study with StudyInstanceUID {uid}."
        return Response.html(
            shell.message_page("Study not in the research PACS", text, uid=uid, depth=3), 404
        )
    # /nmdose/ui/orthanc/study/<uid> -> /app/explorer.html (four levels up)
    return redirect(f"../../../../app/explorer.html#study?uuid={orthanc_study_id(patient_id, uid)}")


# The pages' scripts depend on each other (nmdose.js and each page's script): after an upgrade a browser must
# not run a cached old one beside a new one. So a browser keeps them but asks again each time (`no-cache`), and
# an unchanged file costs a 304 without a body (its ETag: a hash of the content).
_etags: dict[tuple[str, int, int], str] = {}


def _etag(path: Path, data: bytes) -> str:
    st = path.stat()
    key = (path.name, st.st_mtime_ns, st.st_size)
    tag = _etags.get(key)
    if tag is None:
        tag = _etags[key] = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
    return tag


def static(request: Request, ctx: Context) -> Response:
    name = request.params["name"]
    path = STATIC_DIR / name
    ctype = CONTENT_TYPES.get(path.suffix)
    if name.startswith(".") or ctype is None or not path.is_file():
        raise HttpError(404, f"no such static file: {name}")
    data = path.read_bytes()
    tag = _etag(path, data)
    asked = {t.strip().removeprefix("W/") for t in request.header("If-None-Match").split(",") if t.strip()}
    resp = Response(304, b"", ctype) if tag in asked or "*" in asked else Response(200, data, ctype)
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["ETag"] = tag
    return resp


def _page(pattern: str, handler, summary: str, answers=None) -> RouteSpec:
    return RouteSpec("GET", pattern, handler, PUBLIC, summary, answers=answers or {}, content_type=HTML)


ROUTES = (
    # A link the user follows (the outlier list, the study page): the browser sends the session cookie, not a
    # bearer header; the answer (Orthanc's ID of the study) is derived from the PatientID, so it needs a user.
    RouteSpec(
        "GET",
        "/ui/orthanc/study/{uid}",
        orthanc_study,
        "dose:read",
        "Redirect to the study's page in Orthanc Explorer",
        query={},
        answers={
            302: "to the study in Orthanc Explorer",
            400: "the UID is not a DICOM UID",
            404: "the research PACS does not hold this study (an HTML page)",
        },
        content_type=HTML,
    ),
    _page("/ui", ui_root, "Redirect to the index page", {302: "to index (relative)"}),
    _page("/index", root_index, "Redirect to the index page", {302: "to ui/index (relative)"}),
    _page("/ui/index", index, "The index page: links to the research and dose pages and Orthanc Explorer"),
    _page("/ui/research", research, "The research PACS page"),
    _page("/ui/dose", dose, "The dose page"),
    _page("/ui/study/{uid}", study, "One study's dose page", {400: "the UID is not a DICOM UID"}),
    RouteSpec(
        "GET",
        "/static/{name}",
        static,
        PUBLIC,
        "A static file of the pages (scripts, style sheet, Chart.js and its license); `no-cache` with an ETag",
        answers={304: "unchanged since the ETag in If-None-Match", 404: "no such static file"},
        content_type="application/octet-stream",
    ),
)
