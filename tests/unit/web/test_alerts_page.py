"""The dose alerts page (issue 16 item 3): the shared shell with its own script, DOM text only, every label in
English and Korean (the same keys; Korean where the English is words); its routes' permissions."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from nmdose.alerts.rules import KINDS
from nmdose.web import pages, routes_alerts
from nmdose.web.router import PUBLIC, Request, Router

STATIC_DIR = Path(pages.__file__).parent / "static"
# the same in both languages: units, acronyms, a name and a time
SAME_IN_BOTH = {"al.csv", "al.q.ctdivol_mgy", "al.q.dlp_mgycm", "al.acked"}


def dictionaries() -> tuple[dict[str, str], dict[str, str]]:
    js = (STATIC_DIR / "alerts.js").read_text()
    blocks = re.search(r"en: \{(.*?)\n    \},\s*ko: \{(.*?)\n    \}", js, re.S).groups()

    def parse(block: str) -> dict[str, str]:
        block = re.sub(r'"\s*\+\s*"', "", block.replace("\n", " "))  # "a " + "b" -> "a b"
        return dict(re.findall(r'"([\w.]+)":\s*"((?:[^"\\]|\\.)*)"', block))

    return parse(blocks[0]), parse(blocks[1])


def test_the_alerts_page_is_a_shell_with_its_own_script_and_both_languages():
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=None))
    resp = router.dispatch(Request("GET", "/ui/alerts"))
    text = resp.body.decode()
    assert resp.status == 200 and resp.content_type == "text/html; charset=utf-8"
    assert re.findall(r"<script[^>]*>", text)[-1] == '<script src="../static/alerts.js">'
    assert text.count("<script") == text.count("<script src=")  # no inline script (CSP)
    assert re.search(r"<[^>]*\son\w+=", text) is None
    js = (STATIC_DIR / "alerts.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js
    assert 'n.register("alerts", I18N, run)' in js
    en, ko = dictionaries()
    assert set(en) == set(ko) and len(en) > 60
    body = text[text.index("<main>") :]
    used = set(re.findall(r'data-i18n="([\w.]+)"', body))
    used |= set(re.findall(r'"((?:al|col)\.[\w.]+)"', js[js.index("function run") :]))
    used = {k for k in used if not k.endswith(".")}  # prefixes the script completes:
    used |= {f"al.kind.{k}" for k in KINDS}
    used |= {
        f"al.r.{k}" for k in ("threshold", "factor", "band_low", "band_high", "max_studies", "window_days")
    }
    assert used <= set(en), used - set(en)
    same = {k for k in en if en[k] == ko[k]} - SAME_IN_BOTH
    assert same == set(), same
    assert ko["al.title"] == "선량 경보" and ko["nav.alerts"] == "선량 경보"
    shell_page = router.dispatch(Request("GET", "/ui/dose")).body.decode()
    assert 'href="../ui/alerts" data-i18n="nav.alerts"' in shell_page  # the nav link of every page


def test_acknowledging_needs_alerts_ack_rules_config_write_and_reads_dose_read():
    by_route = {(r.method, r.pattern): r.permission for r in routes_alerts.ROUTES}
    assert by_route == {
        ("GET", "/api/alerts/firings"): "dose:read",
        ("POST", "/api/alerts/firings/{name}/ack"): "alerts:ack",
        ("GET", "/api/alerts/rules"): "dose:read",
        ("POST", "/api/alerts/rules"): "config:write",
        ("PUT", "/api/alerts/rules/{name}"): "config:write",
        ("DELETE", "/api/alerts/rules/{name}"): "config:write",
        ("GET", "/ui/alerts"): PUBLIC,
    }
