"""The OHIF viewer at `/nmdose/viewer/`, reading the research PACS through Orthanc's DICOMweb plugin
(`/dicom-web/`): its files (web/viewer_dist.py installs them), its configuration and its boot script (docs/viewer.md).

The files are the application's code, no patient data: public, like the pages' scripts. The images come from
`/dicom-web/`, which the plugin's HTTP filter gates like Orthanc's REST API (web/gate.py): in keycloak mode the
browser's requests carry the `nmdose_session` cookie that the boot script (after the pages' login script) sets.

One address works for a study: `/nmdose/viewer/viewer?StudyInstanceUIDs=<uid>`. Every extension-less name
directly under /nmdose/viewer/ (OHIF's client-side routes: `viewer`, `tmtv`, ...) answers the index page, so the
page's relative links always resolve to /nmdose/viewer/<file>.
"""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

from nmdose.web import viewer_dist
from nmdose.web.router import PUBLIC, HttpError, Request, Response
from nmdose.web.routes import HTML, Context, RouteSpec

HERE = Path(__file__).parent
# Our two files next to OHIF's: the boot script (static/) and the app configuration (templates/).
OWN_FILES = {
    "nmdose-viewer.js": HERE / "static" / "nmdose-viewer.js",
    "app-config.js": HERE / "templates" / "viewer-app-config.js",
}
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
}
# Names webpack gave a content hash (`app.bundle.0f6159c501addfe9.js`, `0ddf166f7a343eda.wasm`): never change.
HASHED_RE = re.compile(r"(^|\.)[0-9a-f]{16}\.(js|wasm|css)$")
ROUTE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,120}$")

# OHIF needs more than the pages' CSP: WebAssembly codecs ('wasm-unsafe-eval'), web workers and images from
# blob: URLs, inline styles (React/emotion set style attributes), data: fonts and images. Still no inline or
# foreign script, no framing, no plugin content.
VIEWER_CSP_BASE = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "media-src 'self' blob:; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def viewer_csp(oidc: dict[str, str] | None) -> str:
    """The viewer's CSP: its own sources, and the OIDC issuer the login script calls (keycloak mode)."""
    issuer = (oidc or {}).get("issuer") or ""
    origin = re.match(r"^https?://[^/]+", issuer)
    connect = "connect-src 'self' data: blob:" + (f" {origin.group(0)}" if origin else "")
    return f"{VIEWER_CSP_BASE}; {connect}"


def dist(ctx: Context) -> Path:
    """The installed OHIF dist/ (the configuration may name another root: `viewer_root`, used by tests)."""
    root = getattr(ctx.cfg, "viewer_root", None)
    return viewer_dist.dist_dir(Path(root)) if root else viewer_dist.dist_dir()


def _answer(body: bytes, ctype: str, cache: str, ctx: Context) -> Response:
    resp = Response(200, body, ctype)
    resp.headers["Cache-Control"] = cache
    resp.headers["Content-Security-Policy"] = viewer_csp(ctx.oidc)
    resp.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return resp


def boot_head(oidc: dict[str, str] | None) -> str:
    """What goes first in the viewer's <head>: in keycloak mode the pages' login (meta + nmdose-auth.js), then
    nmdose-viewer.js, which loads OHIF's scripts (`{scripts}`, filled by viewer_dist.rewrite_index)."""
    login = ""
    if oidc:
        login = (
            f'<meta name="nmdose-oidc" content="{escape(json.dumps(oidc), quote=True)}">'
            '<script src="../static/nmdose-auth.js"></script>'
        )
    return login + '<script src="nmdose-viewer.js" data-scripts="{scripts}"></script>'


def index(request: Request, ctx: Context, *, base: str = "") -> Response:
    """The viewer's page (OHIF's index.html, rewritten): for /viewer/<route> of OHIF (e.g. `viewer`)."""
    try:
        text = viewer_dist.viewer_index(dist(ctx), base + boot_head(ctx.oidc))
    except viewer_dist.ViewerMissing as exc:
        raise HttpError(503, str(exc)) from None
    return _answer(text.encode(), HTML, "no-store", ctx)


def serve_file(parts: list[str], ctx: Context) -> Response:
    """One file of the dist/ folder (or one of ours): 404 for anything else, never a path outside it."""
    shown = "/".join(parts)
    if not all(SEGMENT_RE.match(p) for p in parts):
        raise HttpError(404, f"no such viewer file: {shown[:200]}")
    ctype = CONTENT_TYPES.get(Path(parts[-1]).suffix.lower())
    if len(parts) == 1 and parts[0] in OWN_FILES:
        return _answer(OWN_FILES[parts[0]].read_bytes(), ctype or "text/plain", "no-cache", ctx)
    root = dist(ctx).resolve()
    path = root.joinpath(*parts).resolve()
    if ctype is None or not path.is_relative_to(root) or not path.is_file():
        if not (root / "index.html").is_file():
            raise HttpError(503, "the OHIF viewer is not installed: run `make deps`")
        raise HttpError(404, f"no such viewer file: {shown[:200]}")
    cache = "public, max-age=31536000, immutable" if HASHED_RE.search(parts[-1]) else "public, max-age=3600"
    return _answer(path.read_bytes(), ctype, cache, ctx)


def root(request: Request, ctx: Context) -> Response:
    """/nmdose/viewer and /nmdose/viewer/ (the viewer's study list): Orthanc hands both over as /viewer, and a
    relative link cannot resolve the same from both, so this page alone names its folder from the site root
    (<base>; behind a reverse-proxy prefix use /nmdose/viewer/viewer?StudyInstanceUIDs=..., which is relative)."""
    return index(request, ctx, base='<base href="/nmdose/viewer/">')


def one(request: Request, ctx: Context) -> Response:
    name = request.params["name"]
    if ROUTE_NAME_RE.match(name) and "." not in name:
        return index(request, ctx)  # a client-side route of OHIF
    return serve_file([name], ctx)


def two(request: Request, ctx: Context) -> Response:
    return serve_file([request.params["folder"], request.params["name"]], ctx)


def three(request: Request, ctx: Context) -> Response:
    p = request.params
    return serve_file([p["folder"], p["sub"], p["name"]], ctx)


_ANSWERS = {404: "no such file", 503: "the viewer is not installed (make deps)"}


def _file_route(pattern: str, handler, summary: str) -> RouteSpec:
    return RouteSpec(
        "GET", pattern, handler, PUBLIC, summary, answers=_ANSWERS, content_type="application/octet-stream"
    )


ROUTES = (
    RouteSpec(
        "GET",
        "/viewer",
        root,
        PUBLIC,
        "The OHIF viewer's study list (its images come from /dicom-web/, gated)",
        answers={503: _ANSWERS[503]},
        content_type=HTML,
    ),
    _file_route(
        "/viewer/{name}",
        one,
        "The OHIF viewer: a page (`viewer?StudyInstanceUIDs=<uid>`: one study) or one of its files",
    ),
    _file_route("/viewer/{folder}/{name}", two, "A file of the OHIF viewer in a folder"),
    _file_route("/viewer/{folder}/{sub}/{name}", three, "A file of the OHIF viewer two folders down"),
)
