"""The dose alerts page (/nmdose/ui/alerts) in a real headless Chromium against the research Orthanc of a test
stack: a study ingested by the real ingest fires a rule; the page lists the alert with its value and limit; the
acknowledge form stores who and the comment; Korean relabels every label. In keycloak mode a user without
alerts:ack sees the alert and gets the server's refusal when acknowledging (nothing stored)."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from pydicom.uid import generate_uid

from nmdose.alerts import store
from nmdose.db import connect
from nmdose.dose.ingest import ingest_files
from nmdose.simulate import rdsr as R
from tests.e2e.chromium import ARTIFACTS, errors, start, wait, webdriver_module
from tests.oidc_provider import OidcProvider
from tests.support import query as sql
from tests.support import wait_for

pytestmark = pytest.mark.integration

webdriver_module()

SAME_IN_BOTH = {"al.csv", "al.q.ctdivol_mgy", "al.q.dlp_mgycm", "al.acked", "nav.orthanc"}
ROW_OF = """return Array.from(document.querySelectorAll('#alerts-table tbody tr'))
              .find(tr => tr.textContent.includes(arguments[0])) || null"""


def _labels(browser) -> dict[str, str]:
    return browser.execute_script(
        """const out = {};
           document.querySelectorAll('[data-i18n]').forEach(el => { out[el.getAttribute('data-i18n')] =
             el.textContent; });
           return out;"""
    )


def _fire(cfg, folder, tag: str) -> tuple[int, str]:
    """A rule of its own (no channel) and a study above it: (rule id, study UID)."""
    with contextlib.closing(connect(cfg)) as conn:
        rule = store.upsert_rule(conn, {"name": f"e2e DLP {tag}", "kind": "dlp_above", "threshold": 5000})
    info = R.DoseStudyInfo(study_instance_uid=generate_uid(), study_description=f"CT e2e alerts {tag}")
    event = R.CtAcquisition(acquisition_protocol=f"Abdomen {tag}", dlp_mgycm=6000.0, ctdivol_mgy=60.0)
    ds = R.ct_radiation_dose_sr(info, [event], series_uid=generate_uid(), sop_uid=generate_uid())
    assert ingest_files(cfg, [R.save(ds, folder / f"{tag}.dcm")])[0]["status"] == "ingested"
    return rule["id"], info.study_instance_uid


def _drop(cfg, rule_id: int) -> None:
    with contextlib.closing(connect(cfg)) as conn:
        store.delete_rule(conn, rule_id)


@pytest.fixture(scope="module")
def browser():
    driver = start()
    yield driver
    driver.quit()


def test_the_alerts_page_lists_acknowledges_and_speaks_korean(stack, browser, tmp_path):
    tag = uuid.uuid4().hex[:6].upper()
    rule_id, uid = _fire(stack.cfg, tmp_path, tag)
    try:
        browser.get(stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/alerts")
        row = wait(browser, ROW_OF.replace("arguments[0]", f"'{uid}'"))
        assert f"e2e DLP {tag}" in row.text and "6000" in row.text and "5000" in row.text
        assert f"CT e2e alerts {tag}" in row.text
        row.find_element("css selector", "form.ack input").send_keys("checked: trauma protocol")
        row.find_element("css selector", "form.ack button").click()
        query = """SELECT acknowledged_by, ack_comment FROM dose.alert_firing
                    WHERE rule_id = %s AND acknowledged_at IS NOT NULL"""
        got = wait_for(lambda: sql(stack.cfg, query, (rule_id,)))
        assert got and got[0][1] == "checked: trauma protocol" and got[0][0]
        # acknowledged: gone from the open list, there with who under "acknowledged"
        wait(browser, f"return !document.getElementById('alerts-table').textContent.includes('{uid}')")
        select = browser.find_element("css selector", "#alerts-filters select[name=state]")
        select.find_element("css selector", "option[value=acknowledged]").click()
        browser.find_element("css selector", "#alerts-filters button[type=submit]").click()
        row = wait(browser, ROW_OF.replace("arguments[0]", f"'{uid}'"))
        assert got[0][0] in row.text
        # the rules table lists the rule
        assert f"e2e DLP {tag}" in browser.find_element("id", "rules-table").text

        english = _labels(browser)
        browser.find_element("id", "lang-toggle").click()
        korean = _labels(browser)
        assert browser.find_element("css selector", "h1").text == "선량 경보"
        # this page's own labels (the other pages' navigation labels live in their own scripts)
        mine = {k for k in english if k.startswith(("al.", "col.al_", "nav.alerts"))}
        assert len(mine) > 40
        same = {k for k in mine if korean.get(k) == english[k] and k not in SAME_IN_BOTH}
        assert same == set(), same
        browser.save_screenshot(str(ARTIFACTS / "alerts-ko.png"))
        browser.find_element("id", "lang-toggle").click()
        assert errors(browser) == []
        browser.execute_script("localStorage.removeItem('nmdose.lang')")
    finally:
        _drop(stack.cfg, rule_id)


@pytest.fixture(scope="module")
def kc(tmp_path_factory):
    """Research PACS only, plugin in keycloak mode, a technologist (dose:read, no alerts:ack), one alert."""
    from tests.support import RunningStack

    provider = OidcProvider(roles=("nmdose-technologist",)).start()
    running = RunningStack(
        env={"NMDOSE_AUTH_MODE": "keycloak"},
        keycloak={"issuer": provider.issuer, "client_id": "nmdose-cli"},
        nodes={"simulationPACS": {"local": False}, "dosePACS": {"local": False}},
    )
    try:
        running.fired = _fire(running.cfg, tmp_path_factory.mktemp("kc"), "KC")
        yield running
    finally:
        running.close()
        provider.stop()


def test_in_keycloak_mode_a_user_without_alerts_ack_sees_the_alert_but_cannot_acknowledge(kc, browser):
    _rule_id, uid = kc.fired
    browser.get(kc.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/alerts")
    row = wait(browser, ROW_OF.replace("arguments[0]", f"'{uid}'"), 20)
    row.find_element("css selector", "form.ack input").send_keys("not allowed")
    row.find_element("css selector", "form.ack button").click()
    wait(browser, "return !document.getElementById('alerts-error').hidden")
    assert "alerts:ack" in browser.find_element("id", "alerts-error").text
    with contextlib.closing(connect(kc.cfg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT acknowledged_at FROM dose.alert_firing WHERE study_instance_uid = %s", (uid,))
        assert cur.fetchall() == [(None,)]
