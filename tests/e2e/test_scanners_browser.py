"""The scanners page (/nmdose/ui/scanners) in a real headless Chromium against the research Orthanc of the test
stack: dose reports ingested by the real ingest appear as scanners with the station names and software versions
seen; renaming and merging from the page change the side-by-side box plots; Korean relabels every label. In
keycloak mode a user without config:write sees the list and gets the server's refusal when renaming."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from pydicom.uid import generate_uid

from nmdose.db import connect
from nmdose.dose.ingest import ingest_files
from nmdose.simulate import rdsr as R
from tests.e2e.chromium import ARTIFACTS, errors, start, wait, webdriver_module
from tests.oidc_provider import OidcProvider

pytestmark = pytest.mark.integration

webdriver_module()

CELLS = "Array.from(document.querySelectorAll('#side-table tbody td')).map(td => td.textContent)"
ROWS = "document.getElementById('side-table').getAttribute('data-rows')"
# labels the same in both languages (units and acronyms)
SAME_IN_BOTH = {"sc.m.ctdivol", "sc.m.dlp", "nav.orthanc"}


def _reports(folder, tag: str, serials: list[str]) -> list:
    """Two CT dose reports per serial number: the first scanner renamed its station and upgraded in between."""
    files = []
    for k, serial in enumerate(serials):
        renamed = f"E2E{tag}{k}-NEW" if k == 0 else f"E2E{tag}{k}"
        seen = [(f"E2E{tag}{k}", "VB20A", "20230110"), (renamed, "VB30A", "20240210")]
        for i, (station, software, date) in enumerate(seen):
            info = R.DoseStudyInfo(
                study_instance_uid=generate_uid(), study_date=date, study_description="CT Chest e2e scanners",
                manufacturer="E2E MEDICAL", model_name=f"E2E CT {tag}", device_serial_number=serial,
                station_name=station, software_versions=software,
            )  # fmt: skip
            event = R.CtAcquisition(acquisition_protocol=f"Thorax {tag}", ctdivol_mgy=5.0 + 3 * k + i)
            ds = R.ct_radiation_dose_sr(info, [event], series_uid=generate_uid(), sop_uid=generate_uid())
            files.append(R.save(ds, folder / f"{serial}-{i}.dcm"))
    return files


def _scanner_ids(cfg, serials: list[str]) -> list[int]:
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT device_serial_number, scanner_id FROM dose.scanner WHERE device_serial_number = ANY(%s)",
            (serials,),
        )
        found = dict(cur.fetchall())
    return [found[s] for s in serials]


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


def test_the_scanners_page_lists_renames_merges_and_compares_in_both_languages(stack, browser, tmp_path):
    tag = uuid.uuid4().hex[:6].upper()
    serials = [f"SN{tag}A", f"SN{tag}B"]
    assert {o["status"] for o in ingest_files(stack.cfg, _reports(tmp_path, tag, serials))} == {"ingested"}
    first, second = _scanner_ids(stack.cfg, serials)
    browser.get(stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/scanners")
    row_of = """return Array.from(document.querySelectorAll('#scanners-table tbody tr'))
                  .find(tr => tr.cells[0].textContent === arguments[0])"""
    row = wait(browser, row_of.replace("arguments[0]", f"'{first}'"))
    text = row.text
    assert (
        f"E2E{tag}0 (2023-01-10 – 2023-01-10)" in text and f"E2E{tag}0-NEW (2024-02-10 – 2024-02-10)" in text
    )
    assert "VB20A" in text and "VB30A" in text and serials[0] in text

    # rename the first scanner on the page
    name_input = browser.find_element("css selector", f"input[data-scanner='{first}']")
    name_input.clear()
    name_input.send_keys(f"CT room {tag}")
    row.find_element("css selector", "button").click()
    wait(browser, "return !document.getElementById('scanners-done').hidden")
    wait(
        browser, f"return document.querySelector(\"input[data-scanner='{first}']\").value === 'CT room {tag}'"
    )

    # side by side: the two scanners of this exam's raw protocol
    protocol = browser.find_element("css selector", "#side-filters input[name=protocol]")
    protocol.send_keys(f"Thorax {tag}")
    # the page's first, unfiltered comparison may still be drawing (every scanner of the stack, this test's two
    # among them): forget its table, so what comes next is the filtered answer
    wait(browser, f"return {ROWS} !== null")
    browser.execute_script("document.getElementById('side-table').removeAttribute('data-rows')")
    browser.find_element("css selector", "#side-filters button[type=submit]").click()
    wait(browser, f"return {ROWS} !== null && {CELLS}.includes('E2E CT {tag} (E2E{tag}1)')")
    cells = browser.execute_script(f"return {CELLS}")
    assert f"CT room {tag}" in cells and browser.execute_script(f"return {ROWS}") == "2", cells
    assert int(browser.find_element("id", "side-chart").get_attribute("data-points")) == 2

    # merge the second into the first: one box, four values
    select = browser.find_element("css selector", f"select[data-scanner='{second}']")
    select.find_element("css selector", f"option[value='{first}']").click()
    select.find_element("xpath", "following-sibling::button").click()
    wait(browser, f"return {ROWS} === '1' && {CELLS}[0] === 'CT room {tag}'")
    assert browser.execute_script(f"return {CELLS}")[:2] == [f"CT room {tag}", "4"]
    with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT merged_into FROM dose.scanner WHERE scanner_id = %s", (second,))
        assert cur.fetchone()[0] == first

    # the dose page's scanner filter: a select of the scanners by display name; the merged one is not offered
    browser.get(stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/dose")
    browser.execute_script("document.getElementById('scanner-filter').focus()")  # asked on first use
    option = wait(browser, f"return document.querySelector(\"#scanner-filter option[value='{first}']\")")
    assert option.text == f"CT room {tag}"
    assert not browser.find_elements("css selector", f"#scanner-filter option[value='{second}']")
    wait(browser, "return document.getElementById('ct-table').getAttribute('data-rows') !== null")
    option.click()
    browser.execute_script("document.getElementById('ct-table').removeAttribute('data-rows')")
    browser.find_element("css selector", "#filters button[type=submit]").click()
    wait(browser, "return document.getElementById('ct-table').getAttribute('data-rows') === '1'")
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('#ct-table tbody td')).map(td => td.textContent)"
    )
    assert cells[:2] == [f"Thorax {tag}", "4"]
    browser.get(stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/scanners")
    wait(browser, row_of.replace("arguments[0]", f"'{first}'"))
    wait(browser, f"return {ROWS} !== null")

    # Korean: every label changes but the units
    english = _labels(browser)
    browser.find_element("id", "lang-toggle").click()
    korean = _labels(browser)
    assert browser.find_element("css selector", "h1").text == "장비"
    # this page's labels and the shell's (other pages' navigation labels are their own tests' business)
    ours = [
        k
        for k in english
        if k.startswith(("sc.", "col.sc_", "nav.scanners", "nav.home", "nav.dose", "lang."))
    ]
    assert len(ours) > 40
    same = {k for k in ours if korean.get(k) == english[k] and k not in SAME_IN_BOTH}
    assert same == set(), same
    browser.save_screenshot(str(ARTIFACTS / "scanners-ko.png"))
    browser.find_element("id", "lang-toggle").click()
    assert errors(browser) == []
    browser.execute_script("localStorage.removeItem('nmdose.lang')")


@pytest.fixture(scope="module")
def kc(tmp_path_factory):
    """Research PACS only, plugin in keycloak mode, a technologist (dose:read, no config:write), one scanner."""
    from tests.support import RunningStack

    provider = OidcProvider(roles=("nmdose-technologist",)).start()
    running = RunningStack(
        env={"NMDOSE_AUTH_MODE": "keycloak"},
        keycloak={"issuer": provider.issuer, "client_id": "nmdose-cli"},
        nodes={"simulationPACS": {"local": False}, "dosePACS": {"local": False}},
    )
    try:
        files = _reports(tmp_path_factory.mktemp("kc"), "KC", ["SNKC0"])
        assert {o["status"] for o in ingest_files(running.cfg, files)} == {"ingested"}
        yield running
    finally:
        running.close()
        provider.stop()


def test_in_keycloak_mode_a_user_without_config_write_sees_the_scanners_but_cannot_rename(kc, browser):
    (sid,) = _scanner_ids(kc.cfg, ["SNKC0"])
    browser.get(kc.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/scanners")
    wait(browser, "return document.getElementById('scanners-table').getAttribute('data-rows') === '1'", 20)
    name_input = browser.find_element("css selector", f"input[data-scanner='{sid}']")
    name_input.clear()
    name_input.send_keys("not allowed")
    browser.find_element("css selector", "#scanners-table tbody button").click()
    wait(browser, "return !document.getElementById('scanners-error').hidden")
    assert "config:write" in browser.find_element("id", "scanners-error").text
    with contextlib.closing(connect(kc.cfg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT display_name FROM dose.scanner WHERE scanner_id = %s", (sid,))
        assert cur.fetchone()[0] == "E2E CT KC (E2EKC0)"
    wait(browser, "return document.getElementById('side-table').getAttribute('data-rows') === '1'")
