"""The scanners page (issue 16 item 2, issue 19): the shared shell with its own script, DOM text only, every label
in English and Korean; its routes' permissions (renaming and merging need config:write)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from nmdose.web import pages, routes_scanners, sql_scanners
from nmdose.web.router import PUBLIC, Request, Router

STATIC_DIR = Path(pages.__file__).parent / "static"


def test_the_scanners_page_is_a_shell_with_its_own_script_and_both_languages():
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=None))
    resp = router.dispatch(Request("GET", "/ui/scanners"))
    text = resp.body.decode()
    assert resp.status == 200 and resp.content_type == "text/html; charset=utf-8"
    assert re.findall(r"<script[^>]*>", text)[-1] == '<script src="../static/scanners.js">'
    assert text.count("<script") == text.count("<script src=")  # no inline script (CSP)
    assert re.search(r"<[^>]*\son\w+=", text) is None
    js = (STATIC_DIR / "scanners.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js
    assert 'n.register("scanners", I18N, run)' in js
    en, ko = (
        set(re.findall(r'"([\w.]+)":', block))
        for block in re.search(r"en: \{(.*?)\n    \},\s*ko: \{(.*?)\n    \}", js, re.S).groups()
    )
    assert en == ko and len(en) > 40
    body = text[text.index("<main>") :]
    used = set(re.findall(r'data-i18n="([\w.]+)"', body))
    code = js[js.index("var UNITS") :]
    # the labels the script sets (not the prefixes it completes: "sc.m." + measure, "col.sc_" + column)
    used |= {k for k in re.findall(r'"((?:sc|col)\.[\w.]+)"', code) if not k.endswith((".", "_"))}
    used |= {
        "col.sc_" + c for c in re.findall(r'"(\w+)"', re.search(r"STAT_COLUMNS = \[(.*?)\]", js).group(1))
    }
    used |= {f"sc.m.{m}" for m in sql_scanners.MEASURES}
    assert set(re.findall(r'<option value="(\w+)" data-i18n="sc\.m\.', body)) == set(sql_scanners.MEASURES)
    assert used <= en, used - en
    # the Korean labels are Korean where the English ones are words
    ko_block = re.search(r"ko: \{(.*?)\n    \}", js, re.S).group(1)
    assert '"sc.title": "장비"' in ko_block and '"nav.scanners": "장비"' in ko_block
    shell_page = router.dispatch(Request("GET", "/ui/dose")).body.decode()
    assert 'href="../ui/scanners" data-i18n="nav.scanners"' in shell_page  # the nav link of every page


def test_renaming_and_merging_need_config_write_and_the_reads_dose_read():
    by_route = {(r.method, r.pattern): r for r in routes_scanners.ROUTES}
    assert by_route[("POST", "/api/scanners/{name}/rename")].permission == "config:write"
    assert by_route[("POST", "/api/scanners/{name}/merge")].permission == "config:write"
    for pattern in ("/api/scanners", "/api/scanners/side-by-side"):
        route = by_route[("GET", pattern)]
        assert (route.permission, route.export_permission) == ("dose:read", "dose:export")
    assert by_route[("GET", "/ui/scanners")].permission == PUBLIC


def test_scanner_ids_and_display_names_are_checked():
    import pytest

    from nmdose.web.router import HttpError

    assert routes_scanners.scanner_id("12") == 12
    for bad in ("0", "-1", "1.5", "abc", "", "٣", "99999999999", "nmdose.css"):
        with pytest.raises(HttpError) as exc:
            routes_scanners.scanner_id(bad)
        assert exc.value.status == 400
    assert routes_scanners.check_name("  CT  ER\tForce ") == "CT ER Force"
    for bad in ("", "   ", "a\x00b", "x" * 201, 5, None, "a\u200bb"):
        with pytest.raises(HttpError):
            routes_scanners.check_name(bad)
