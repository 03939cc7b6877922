"""The standard-names page in a real headless Chromium (issue 16 item 1), in both languages and both auth modes:
map ticked suggestions to one name, add, edit and delete a rule, a bad import file listing its lines, the
Korean toggle leaving no English label; in keycloak mode the page logs in and its changes carry the token."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import uuid

import pytest

from nmdose.db import connect
from tests.e2e.chromium import ARTIFACTS, errors, start, wait, webdriver_module
from tests.oidc_provider import OidcProvider

pytestmark = pytest.mark.integration

webdriver_module()

SAME_IN_BOTH = {"", "CSV", "YAML", "N", "nmdose", "Orthanc"}


def add_studies(cfg, tag: str) -> list[str]:
    """Two studies whose descriptions are the same examination spelt two ways, and one other."""
    uids = [f"1.2.826.0.1.999.88.{int(uuid.uuid4().int % 10**12)}.{i}" for i in range(3)]
    descriptions = [f"{tag} CT Chest", f"흉부 CT {tag}", f"{tag} Abdomen"]
    with contextlib.closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
        for uid, desc in zip(uids, descriptions, strict=True):
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                       ct_event_count, ct_total_dlp_mgycm) VALUES (%s, %s, 2024, %s, 1, %s)""",
                (uid, dt.date(2024, 6, 1), desc, 100.0 * (1 + 2 * uids.index(uid))),
            )
    return uids


def names_of(cfg, uids) -> list[str | None]:
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT study_instance_uid, standard_name FROM dose.study WHERE study_instance_uid = ANY(%s)",
            (uids,),
        )
        got = dict(cur.fetchall())
    return [got.get(u) for u in uids]


def cleanup(cfg, uids, tag: str) -> None:
    from nmdose.dose import standard_names as sn

    with contextlib.closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dose.standard_name_rule WHERE standard_name LIKE %s", (f"%{tag}%",))
        cur.execute("DELETE FROM dose.study WHERE study_instance_uid = ANY(%s)", (uids,))
        sn.apply(cur)


def labels(browser) -> dict:
    got = browser.execute_script(
        "return Array.from(document.querySelectorAll('[data-i18n]')).map(function (el, i) {"
        " return [i, el.getAttribute('data-i18n'), el.textContent]; })"
    )
    heads = browser.execute_script(
        "return Array.from(document.querySelectorAll('main th')).map(function (th, i) {"
        " return [1000 + i, 'th', th.textContent]; })"
    )
    return {(i, k): text for i, k, text in got + heads}


def row_with(browser, table: str, text: str):
    return wait(
        browser,
        f"""return Array.from(document.querySelectorAll('#{table} tbody tr'))
                  .find(tr => tr.textContent.indexOf({text!r}) >= 0)""",
    )


@pytest.fixture(scope="module")
def browser():
    driver = start()
    yield driver
    driver.quit()


def test_the_names_page_maps_suggestions_edits_rules_and_speaks_korean(stack, browser, tmp_path):
    tag = "NMDSN" + uuid.uuid4().hex[:6].upper()
    uids = add_studies(stack.cfg, tag)
    url = stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/names"
    try:
        browser.get(url)
        browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")
        browser.get(url)
        # the two spellings of one examination are one suggestion (their normalised form), with both studies
        row = row_with(browser, "sn-suggestions-table", f"{tag} CT Chest")
        assert f"흉부 CT {tag} (1)" in row.text and f"{tag} CT Chest (1)" in row.text
        assert row.find_elements("css selector", "td")[4].text == "2"
        row.find_element("css selector", "input.sn-pick").click()
        browser.find_element("id", "sn-map-name").send_keys(f"CT Chest {tag}")
        browser.find_element("id", "sn-map").click()
        wait(
            browser,
            "return document.getElementById('sn-status').textContent.indexOf('renamed 2 studies') >= 0",
        )
        assert names_of(stack.cfg, uids) == [f"CT Chest {tag}", f"CT Chest {tag}", None]
        row_with(browser, "sn-names-table", f"CT Chest {tag}")
        # the dose page groups by it: one row of two studies (their total DLP: 100 and 300)
        browser.get(url.replace("/ui/names", "/ui/dose"))
        dose_row = row_with(browser, "sn-table", f"CT Chest {tag}")
        cells = [td.text for td in dose_row.find_elements("css selector", "td")]
        assert cells[1] == "2"
        wait(browser, "return Number(document.getElementById('sn-chart').getAttribute('data-points')) > 0")
        browser.execute_script("document.getElementById('standard-name-section').scrollIntoView()")
        browser.save_screenshot(str(ARTIFACTS / "dose-standard-names.png"))
        browser.get(url)
        row_with(browser, "sn-suggestions-table", f"{tag} Abdomen")

        # add a rule with the form, edit it, delete it
        form = browser.find_element("id", "sn-rule-form")
        form.find_element("name", "raw_value").send_keys(f"{tag} abdomen")
        form.find_element("name", "standard_name").send_keys(f"CT Abdomen {tag}")
        browser.find_element("id", "sn-save").click()
        rule = row_with(browser, "sn-rules-table", f"CT Abdomen {tag}")
        assert names_of(stack.cfg, uids)[2] == f"CT Abdomen {tag}"
        rule.find_element("css selector", "button[data-i18n='sn.edit']").click()
        name = form.find_element("name", "standard_name")
        name.clear()
        name.send_keys(f"CT Abdomen+Pelvis {tag}")
        assert browser.find_element("id", "sn-save").text == "Save rule"
        browser.find_element("id", "sn-save").click()
        rule = row_with(browser, "sn-rules-table", f"CT Abdomen+Pelvis {tag}")
        assert names_of(stack.cfg, uids)[2] == f"CT Abdomen+Pelvis {tag}"
        rule.find_element("css selector", "button.danger").click()
        wait(
            browser,
            f"return document.getElementById('sn-rules-table').textContent.indexOf('Pelvis {tag}') < 0",
        )
        assert names_of(stack.cfg, uids)[2] is None

        # a bad file imports nothing and lists its lines
        bad = tmp_path / "rules.csv"
        bad.write_text(f"field,raw_value,standard_name\nprotocol,{tag} x,y\nagent,,z\n", encoding="utf-8")
        browser.find_element("id", "sn-file").send_keys(str(bad))
        browser.find_element("id", "sn-import").click()
        wait(browser, "return document.querySelectorAll('#sn-import-errors li').length === 2")
        lines = [li.text for li in browser.find_elements("css selector", "#sn-import-errors li")]
        assert (
            lines[0].startswith("line 2: field must be one of") and lines[1] == "line 3: raw_value is empty"
        )

        # Korean: every label and table header changes (units and file formats aside)
        en = labels(browser)
        browser.find_element("id", "lang-toggle").click()
        ko = labels(browser)
        assert browser.find_element("css selector", "h1").text == "표준 검사명"
        english = {
            k: t
            for k, t in en.items()
            if ko.get(k) == t
            and t.strip() not in SAME_IN_BOTH
            and (not k[1].startswith("nav.") or k[1] == "nav.names")  # the other pages' links are theirs
        }
        assert english == {}
        assert not re.search(
            r"\b(Field|Rules|Raw value|Standard name|Map)\b", browser.find_element("tag name", "main").text
        )
        browser.save_screenshot(str(ARTIFACTS / "names-ko.png"))
        browser.find_element("id", "lang-toggle").click()
        browser.save_screenshot(str(ARTIFACTS / "names-en.png"))
        # the console names only the refused import (400, as designed)
        assert [e for e in errors(browser) if "/api/names/import" not in e] == []
    finally:
        browser.execute_script("localStorage.removeItem('nmdose.lang')")
        cleanup(stack.cfg, uids, tag)


@pytest.fixture(scope="module")
def kc_stack():
    """Research PACS only, plugin in keycloak mode, a realm that gives the physicist role (config:write)."""
    from tests.support import RunningStack

    provider = OidcProvider(roles=("nmdose-physicist",)).start()
    try:
        running = RunningStack(
            env={"NMDOSE_AUTH_MODE": "keycloak"},
            keycloak={"issuer": provider.issuer, "client_id": "nmdose-cli"},
            nodes={"simulationPACS": {"local": False}, "dosePACS": {"local": False}},
        )
        try:
            yield running, provider
        finally:
            running.close()
    finally:
        provider.stop()


def test_in_keycloak_mode_the_page_logs_in_and_its_changes_carry_the_token(kc_stack, browser):
    running, provider = kc_stack
    tag = "NMDKC" + uuid.uuid4().hex[:6].upper()
    uids = add_studies(running.cfg, tag)
    try:
        browser.get(running.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/names")
        row = row_with(browser, "sn-suggestions-table", f"{tag} Abdomen")
        assert ("auth", "ok") in provider.log
        row.find_element("css selector", "input.sn-pick").click()
        browser.find_element("id", "sn-map-name").send_keys(f"CT Abdomen {tag}")
        browser.find_element("id", "sn-map").click()
        row_with(browser, "sn-rules-table", f"CT Abdomen {tag}")
        assert names_of(running.cfg, uids)[2] == f"CT Abdomen {tag}"
        with contextlib.closing(connect(running.cfg)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT created_by FROM dose.standard_name_rule WHERE standard_name = %s",
                (f"CT Abdomen {tag}",),
            )
            assert cur.fetchone()[0] == "kim"  # the token's user
        browser.save_screenshot(str(ARTIFACTS / "names-keycloak.png"))
    finally:
        cleanup(running.cfg, uids, tag)
