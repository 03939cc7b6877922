"""The HTML of the pages: small server-rendered shells from the files in `templates/` (`string.Template`,
`${name}` placeholders), every value through :func:`html.escape` unless it is :class:`Html` (a template this
module rendered). The shells hold no data but labels and the page's parameters (`data-page-data`); the tables and
charts are filled from the JSON API by each page's own script (PAGE_SCRIPTS, on the shared helpers of
`static/nmdose.js`; DOM text only, never innerHTML). No inline script: the Content-Security-Policy allows our own
script files only.
"""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

TEMPLATES_DIR = Path(__file__).parent / "templates"

TITLES = {
    "index": "nmdose",
    "research": "Research PACS",
    "dose": "Dose",
    "study": "Study dose",
    "patients": "Patient cumulative dose",
    "report": "Dose report",
    "scanners": "Scanners",
    "alerts": "Dose alerts",
    "names": "Standard names",
    "projects": "Research projects",
    "project": "Research project",
    "message": "nmdose",
}


# Pages with a script of their own (static/<file>, loaded after nmdose.js; it calls `window.nmdose.register`).
PAGE_SCRIPTS: dict[str, str] = {
    "research": "research.js",
    "dose": "dose.js",
    "study": "study.js",
    "patients": "patients.js",
    "projects": "projects.js",
    "project": "projects.js",
    "names": "names.js",
    "report": "report.js",
    "scanners": "scanners.js",
    "alerts": "alerts.js",
}


class Html(str):
    """Text that is already HTML (a rendered template): put in as it is, never escaped again."""


def escape(value: Any) -> str:
    if isinstance(value, Html):
        return value
    return html.escape("" if value is None else str(value), quote=True)


@cache
def template(name: str) -> Template:
    """templates/`name` without its final newline (the files end with one; the HTML around decides)."""
    return Template((TEMPLATES_DIR / name).read_text(encoding="utf-8").removesuffix("\n"))


def render(name: str, **values: Any) -> Html:
    """templates/`name` with every `${key}` replaced by `values[key]`, escaped (a missing key is a KeyError)."""
    return Html(template(name).substitute({k: escape(v) for k, v in values.items()}))


def shell(
    name: str,
    body: Html,
    *,
    data: dict[str, Any] | None = None,
    depth: int = 1,
    oidc: dict[str, str] | None = None,
) -> str:
    """The page around `body`: language toggle, navigation, scripts. `data`: the page's parameters as JSON in
    `data-page-data`. `depth`: path segments below /ui/. `oidc`: keycloak mode's login settings, read by
    static/nmdose-auth.js (the shell itself holds no data)."""
    login = Html("\n" + render("oidc-meta.html", oidc=json.dumps(oidc))) if oidc else ""
    page = render(
        "shell.html",
        login=login,
        title=TITLES[name],
        up="../" * depth,
        page=name,
        page_data=json.dumps(data or {}, ensure_ascii=False),
        body=body,
        page_script=Html(
            f'\n<script src="{escape("../" * depth)}static/{escape(PAGE_SCRIPTS[name])}"></script>'
            if name in PAGE_SCRIPTS
            else ""
        ),
    )
    return page + "\n"


def page(name: str, *, uid: str | None = None, data: dict[str, Any] | None = None, oidc=None) -> str:
    """One of the pages: `index`, `research`, `dose` (its opening requests in `data`), `study` (of `uid`)."""
    if name == "study":
        return shell(name, render("study.html", uid=uid), data={"uid": uid}, depth=2, oidc=oidc)
    return shell(name, render(f"{name}.html"), data=data, depth=1, oidc=oidc)


def message_page(title: str, text: str, *, uid: str | None = None, depth: int = 1) -> str:
    """A small page for an error the user reached by following a link (not a JSON API answer); with `uid`, a
    link to that study's dose page."""
    back = ""
    if uid is not None:
        back = render("message-back.html", href="../" * (depth - 1) + "study/" + quote(uid, safe=""))
    return shell("message", render("message.html", title=title, text=text, back=back), depth=depth)


def moved(location: str) -> str:
    """The body of a redirect to `location`."""
    return render("redirect.html", target=location)


def orthanc_explorer_js() -> str:
    """JavaScript for `orthanc.ExtendOrthancExplorer`: a "nmdose" button on the home page and a "dose for this
    study" button on a study's page (Orthanc Explorer 1, jQuery Mobile; paths relative to /app/)."""
    return (TEMPLATES_DIR / "orthanc-explorer.js").read_text(encoding="utf-8")
