"""Acknowledging an outlier on the dose page (issue 19; web/routes_outliers.py, static/dose.js ackCell) in a real
headless Chromium against the research Orthanc of a test stack: a study above 2 x the official head CTDIvol level
goes through the real dose ingest; its outlier row gets an Acknowledge button; a blank comment is refused in the
page; the comment is stored (dose.outlier_ack) and the row drawn again as acknowledged (who, when, comment); the
worklist selector hides it (not yet acknowledged) and shows it (acknowledged); Korean relabels every label of it."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from pydicom.uid import generate_uid

from nmdose.db import connect
from nmdose.dose.ingest import ingest_files
from nmdose.simulate import rdsr as R
from tests.e2e.chromium import ARTIFACTS, errors, start, wait, webdriver_module
from tests.support import query as sql
from tests.support import wait_for

pytestmark = pytest.mark.integration

webdriver_module()

SAME_IN_BOTH = {"ack.by"}  # "{by}, {at}"
ROWS_OF = """return Array.from(document.querySelectorAll('#outlier-table tbody tr'))
               .filter(tr => tr.textContent.includes(arguments[0]))"""


def _labels(browser) -> dict[str, str]:
    return browser.execute_script(
        """const out = {};
           document.querySelectorAll('[data-i18n]').forEach(el => { out[el.getAttribute('data-i18n')] =
             el.textContent; });
           return out;"""
    )


@pytest.fixture(scope="module")
def browser():
    driver = start()
    yield driver
    driver.quit()


@pytest.fixture
def outlier(stack, tmp_path):
    """A head CT of its own station, CTDIvol 200 mGy (the UK NDRL is 47): (station, StudyInstanceUID)."""
    station = f"ACK-{uuid.uuid4().hex[:6].upper()}"
    info = R.DoseStudyInfo(station_name=station, study_description="CT Head ack e2e")
    event = R.CtAcquisition(acquisition_protocol="Head routine", ctdivol_mgy=200.0, dlp_mgycm=4000.0)
    ds = R.ct_radiation_dose_sr(info, [event], series_uid=generate_uid(), sop_uid=generate_uid())
    assert ingest_files(stack.cfg, [R.save(ds, tmp_path / "ack.dcm")])[0]["status"] == "ingested"
    yield station, info.study_instance_uid
    with contextlib.closing(connect(stack.cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dose.outlier_ack WHERE study_instance_uid = %s", (info.study_instance_uid,))


def rows(browser, uid):
    return browser.execute_script(ROWS_OF.replace("arguments[0]", f"'{uid}'"))


def test_acknowledging_an_outlier_row_stores_the_comment_and_redraws_it_in_english_and_korean(
    stack, browser, outlier
):
    station, uid = outlier
    browser.set_window_size(1600, 4000)
    browser.get(stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/dose")
    wait(browser, "return document.getElementById('outlier-table').getAttribute('data-rows') !== null")
    field = browser.find_element("css selector", "#filters [name=station]")
    field.clear()
    field.send_keys(station)
    browser.execute_script("document.getElementById('outlier-table').removeAttribute('data-rows')")
    browser.find_element("css selector", "#filters button[type=submit]").click()
    wait(browser, "return document.getElementById('outlier-table').getAttribute('data-rows') !== null")
    shown = rows(browser, uid)
    assert shown, browser.find_element("id", "outlier-table").text
    row = shown[0]
    assert "Acknowledge" in row.find_element("css selector", "button.ack-open").text
    row.find_element("css selector", "button.ack-open").click()
    # a blank comment: said in the row, nothing sent
    row.find_element("css selector", ".ack-form button.ack-save").click()
    assert "A comment is required." in row.find_element("css selector", ".ack-error").text
    row.find_element("css selector", ".ack-form input").send_keys("checked: stroke protocol, repeat scan")
    row.find_element("css selector", ".ack-form button.ack-save").click()
    got = wait_for(
        lambda: sql(
            stack.cfg,
            "SELECT acknowledged_by, ack_comment, reason FROM dose.outlier_ack WHERE study_instance_uid = %s",
            (uid,),
        )
    )
    assert got and got[0][1:] == ("checked: stroke protocol, repeat scan", "reference_level") and got[0][0]
    # every row of the study and reason drawn again as acknowledged: who and the comment
    done = wait(
        browser,
        ROWS_OF.replace("arguments[0]", f"'{uid}'") + ".filter(tr => tr.querySelector('.ack-done'))",
    )
    assert got[0][0] in done[0].text and "checked: stroke protocol, repeat scan" in done[0].text
    assert "Edit" in done[0].find_element("css selector", "button.ack-open").text
    browser.find_element("id", "outlier-table").screenshot(str(ARTIFACTS / "outlier-ack.png"))

    # the worklist: acknowledged rows are listed under "acknowledged", left out of "not yet" (the default)
    def choose(value):
        browser.execute_script("document.getElementById('outlier-table').removeAttribute('data-rows')")
        browser.find_element("css selector", f"#outlier-acknowledged option[value={value}]").click()
        wait(browser, "return document.getElementById('outlier-table').getAttribute('data-rows') !== null")

    choose("yes")
    listed = rows(browser, uid)
    assert listed and "checked: stroke protocol, repeat scan" in listed[0].text
    # the station's only study: all its hits (CTDIvol per event, DLP per exam) acknowledged at once
    counts = browser.find_element("id", "outlier-ack-counts").text
    assert len(listed) >= 2 and counts == f"{len(listed)} acknowledged, 0 to review"
    choose("no")
    assert not rows(browser, uid)
    choose("yes")

    english = _labels(browser)
    browser.find_element("id", "lang-toggle").click()
    korean = _labels(browser)
    mine = {k for k in english if k.startswith(("ack.", "col.ack", "col.alert_ack", "f.acknowledged"))}
    assert {"ack.again", "ack.by", "ack.counts", "col.ack", "col.alert_ack", "f.acknowledged", "ack.no",
            "ack.yes", "ack.all"} <= mine  # fmt: skip
    same = {k for k in mine if korean.get(k) == english[k] and k not in SAME_IN_BOTH}
    assert same == set(), same
    assert korean["col.ack"] == "확인" and korean["f.acknowledged"] == "확인 여부"
    assert "수정" in rows(browser, uid)[0].find_element("css selector", "button.ack-open").text
    browser.find_element("id", "outlier-table").screenshot(str(ARTIFACTS / "outlier-ack-ko.png"))
    browser.find_element("id", "lang-toggle").click()
    assert errors(browser) == []
    browser.execute_script("localStorage.removeItem('nmdose.lang')")


@pytest.fixture(scope="module")
def kc(tmp_path_factory):
    """Research PACS only, plugin in keycloak mode, a technologist (dose:read, no alerts:ack), one outlier."""
    from tests.oidc_provider import OidcProvider
    from tests.support import RunningStack

    provider = OidcProvider(roles=("nmdose-technologist",), username="park").start()
    running = RunningStack(
        env={"NMDOSE_AUTH_MODE": "keycloak"},
        keycloak={"issuer": provider.issuer, "client_id": "nmdose-cli"},
        nodes={"simulationPACS": {"local": False}, "dosePACS": {"local": False}},
    )
    try:
        folder = tmp_path_factory.mktemp("kc")
        info = R.DoseStudyInfo(station_name="ACK-KC", study_description="CT Head ack kc")
        event = R.CtAcquisition(acquisition_protocol="Head routine", ctdivol_mgy=200.0, dlp_mgycm=4000.0)
        ds = R.ct_radiation_dose_sr(info, [event], series_uid=generate_uid(), sop_uid=generate_uid())
        assert ingest_files(running.cfg, [R.save(ds, folder / "kc.dcm")])[0]["status"] == "ingested"
        running.uid = info.study_instance_uid
        yield running
    finally:
        running.close()
        provider.stop()


def test_in_keycloak_mode_a_user_without_alerts_ack_is_told_so_and_nothing_is_stored(kc, browser):
    browser.get(kc.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/dose")
    row = wait(browser, ROWS_OF.replace("arguments[0]", f"'{kc.uid}'") + "[0]", 30)
    row.find_element("css selector", "button.ack-open").click()
    row.find_element("css selector", ".ack-form input").send_keys("not allowed")
    row.find_element("css selector", ".ack-form button.ack-save").click()
    message = wait(browser, "return document.querySelector('.ack-error') && "
                   "document.querySelector('.ack-error').textContent.indexOf('alerts:ack') >= 0 && "
                   "document.querySelector('.ack-error')")  # fmt: skip
    assert message.text.startswith("Not allowed: acknowledging needs the alerts:ack permission")
    assert "error from the server" in message.text
    assert sql(kc.cfg, "SELECT count(*) FROM dose.outlier_ack")[0][0] == 0
    audit = wait_for(
        lambda: sql(
            kc.cfg,
            "SELECT status, outcome, actor_username FROM audit.event WHERE action = %s AND method = 'POST'",
            ("/api/dose/outliers/ack",),
        )
    )
    assert audit == [(403, "denied", "park")]
