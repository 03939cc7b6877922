"""The standard-names page (issue 16 item 1): the shared shell with its own script, DOM text only, every label in
English and Korean; its routes' permissions (changes need config:write); the dose routes' standard-name groups."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from nmdose.web import pages, routes_dose, routes_names
from nmdose.web.router import PUBLIC, Request, Router

STATIC_DIR = Path(pages.__file__).parent / "static"


@pytest.fixture
def router():
    r = Router()
    pages.register_routes(r, SimpleNamespace(cfg=None))  # no call below reaches the database
    return r


def dictionaries(js: str) -> tuple[set[str], set[str], str]:
    en, ko = re.search(r"en: \{(.*?)\n    \},\s*ko: \{(.*?)\n    \}", js, re.S).groups()
    return set(re.findall(r'"([\w.]+)":', en)), set(re.findall(r'"([\w.]+)":', ko)), ko


def test_the_names_page_is_a_shell_with_its_own_script_and_both_languages(router):
    resp = router.dispatch(Request("GET", "/ui/names"))
    text = resp.body.decode()
    assert resp.status == 200 and resp.content_type == "text/html; charset=utf-8"
    assert re.findall(r"<script[^>]*>", text)[-1] == '<script src="../static/names.js">'
    assert text.count("<script") == text.count("<script src=")  # no inline script (CSP)
    assert re.search(r"<[^>]*\son\w+=", text) is None
    js = (STATIC_DIR / "names.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js
    assert 'n.register("names", I18N, run)' in js
    en, ko, ko_block = dictionaries(js)
    assert en == ko and len(en) > 50
    body = text[text.index("<main>") :]
    used = set(re.findall(r'data-i18n="([\w.]+)"', body))
    code = js[js.index("var n = window.nmdose") :]
    used |= set(re.findall(r'"((?:sn|col)\.[\w.]*\w)"', code))  # the labels the script sets
    used |= {
        f"sn.field.{f}" for f in ("study_description", "requested_procedure", "acquisition_protocol", "agent")
    }
    assert used <= en, used - en
    # Korean where the English labels are words (no English left over)
    for key in ("sn.title", "sn.add", "sn.map", "col.sn_standard_name", "nav.names"):
        value = re.search(rf'"{re.escape(key)}": "([^"]*)"', ko_block).group(1)
        assert re.search(r"[가-힣]", value) and not re.search(r"[A-Za-z]{3,}", value), (key, value)
    nmdose_js = (STATIC_DIR / "nmdose.js").read_text()
    assert nmdose_js.count('"nav.names":') == 2  # the nav link of every page, in both languages
    dose_page = router.dispatch(Request("GET", "/ui/dose")).body.decode()
    assert 'href="../ui/names" data-i18n="nav.names"' in dose_page


def test_changes_need_config_write_and_reads_dose_read():
    by_route = {(r.method, r.pattern): r for r in routes_names.ROUTES}
    for method, pattern in [("POST", "/api/names/rules"), ("PUT", "/api/names/rules/{name}"),
                            ("DELETE", "/api/names/rules/{name}"), ("POST", "/api/names/map"),
                            ("POST", "/api/names/import"), ("POST", "/api/names/apply")]:  # fmt: skip
        assert by_route[(method, pattern)].permission == "config:write"
    for pattern in ("/api/names/rules", "/api/names/in-use", "/api/names/suggestions", "/api/names/export"):
        assert by_route[("GET", pattern)].permission == "dose:read"
    assert by_route[("GET", "/ui/names")].permission == PUBLIC


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/api/names/rules", {"field": "x", "raw_value": "a", "standard_name": "b"}, 400, "must be one of"),
        ("POST", "/api/names/rules", {"field": "agent", "raw_value": "a"}, 400, "lacks 'standard_name'"),
        ("POST", "/api/names/rules", {"field": "agent", "raw_value": "a", "standard_name": "b", "x": 1}, 400,
         "unknown field 'x'"),
        ("POST", "/api/names/rules", {"field": "agent", "raw_value": "a" * 257, "standard_name": "b"}, 400,
         "longer than 256"),
        ("POST", "/api/names/rules", [1], 400, "must be object"),
        ("PUT", "/api/names/rules/nmdose.css", {"field": "agent", "raw_value": "a", "standard_name": "b"}, 400,
         "a rule id is a positive integer"),
        ("DELETE", "/api/names/rules/-1", None, 400, "a rule id is a positive integer"),
        ("POST", "/api/names/import", {"format": "xml", "text": ""}, 400, "must be one of csv, yaml"),
        ("POST", "/api/names/map", {"standard_name": "x", "items": []}, 400, "must hold 1 to 5000 items"),
    ],
)  # fmt: skip
def test_bad_bodies_answer_400_before_any_database(router, method, path, body, status, message):
    import json

    raw = json.dumps(body).encode() if body is not None else b""
    resp = router.dispatch(Request(method, path, headers={"content-type": "application/json"}, body=raw))
    assert resp.status == status and message in json.loads(resp.body)["error"]


def test_the_dose_statistics_can_be_grouped_by_standard_name():
    by_route = {r.pattern: r for r in routes_dose.ROUTES}
    for pattern in (
        "/api/dose/ct-protocols",
        "/api/dose/activity",
        "/api/dose/box",
        "/api/dose/effective-dose",
    ):
        assert "standard_name" in by_route[pattern].query["group"].schema["enum"], pattern
