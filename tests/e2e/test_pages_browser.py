"""The pages in a real headless Chromium (Debian `chromium` + `chromium-driver`, driven by Selenium) against
the research Orthanc of the test stack: no console errors, charts with the expected number of points, the
Korean toggle, a StudyDescription `<script>` shown as text. Screenshots go to tests/_artifacts/."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from nmdose.db import connect

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "_artifacts"
XSS = "<script>window.__xss = 1</script>"
PREFIX = "1.2.826.0.1.999."

if os.environ.get("CI"):  # make test installs them: in CI a missing browser is a failure, not a skip
    from selenium import webdriver

    assert CHROMIUM and CHROMEDRIVER, "Debian chromium and chromium-driver are not installed"
else:
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian chromium and chromium-driver are not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def filled(stack):
    """Census, retrieval and dose rows in the stack's database (removed afterwards)."""
    with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        for i in range(30):
            uid = f"{PREFIX}{i}"
            date = dt.date(2022 + i % 3, 1 + i % 12, 10)
            desc = XSS if i % 3 == 0 else "CT Chest e2e"
            cur.execute(
                """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found,
                   patient_id, is_target) VALUES (%s, 'simulationPACS', %s, %s, '{CT}', %s, %s)""",
                (uid, date, desc, f"E2E{i}", i % 4 != 0),
            )
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                   station_name, ct_event_count, ct_total_dlp_mgycm) VALUES (%s, %s, %s, %s, 'CT-E2E', 1, %s)""",
                (uid, date, date.year, desc, 100.0 + i),
            )
            cur.execute(
                """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                   acquisition_protocol, ctdivol_mgy, dlp_mgycm) VALUES (%s, '#0', 0, %s, %s, %s, %s, %s)""",
                (uid, date, date.year, ["E2E head", "E2E chest", XSS][i % 3], 5.0 + i, 100.0 + i),
            )
        conn.commit()
    yield stack
    with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dose.study WHERE study_instance_uid LIKE %s", (PREFIX + "%",))
        cur.execute("DELETE FROM rpacs.study WHERE study_uid LIKE %s", (PREFIX + "%",))
        conn.commit()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--window-size=1400,1800"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    ARTIFACTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()


def wait(driver, script: str, timeout_s: float = 15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s).until(lambda d: d.execute_script(script))


def errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def base(stack) -> str:
    return stack.cfg.research_node.http_url.rstrip("/") + "/nmdose"


def test_research_page_draws_the_yearly_chart_and_shows_the_script_description_as_text(filled, browser):
    url = base(filled)
    browser.get(url + "/ui/research")
    wait(browser, "return document.getElementById('yearly-table').getAttribute('data-rows')")
    with urllib.request.urlopen(url + "/api/research/yearly") as r:
        rows = json.loads(r.read())["rows"]
    bars = {(r["year"], r["state"]) for r in rows}  # one bar segment per year x state with studies
    points = browser.execute_script(
        "return document.getElementById('yearly-chart').getAttribute('data-points')"
    )
    assert int(points) == len(bars)
    cells = [td.text for td in browser.find_elements("css selector", "#yearly-table td")]
    assert XSS in cells  # shown as text
    assert browser.execute_script("return window.__xss") is None  # never run
    browser.save_screenshot(str(ARTIFACTS / "research-en.png"))
    assert errors(browser) == []


def test_korean_toggle_relabels_the_page(filled, browser):
    browser.get(base(filled) + "/ui/research")
    wait(browser, "return document.getElementById('yearly-table').getAttribute('data-rows')")
    browser.find_element("id", "lang-toggle").click()
    assert (
        browser.find_element("css selector", "[data-i18n='research.title']").text
        == "연구 PACS: 연도별 검사 수"
    )
    assert browser.execute_script("return document.documentElement.lang") == "ko"
    browser.save_screenshot(str(ARTIFACTS / "research-ko.png"))
    browser.find_element("id", "lang-toggle").click()
    assert browser.find_element("css selector", "[data-i18n='research.title']").text.startswith(
        "Research PACS"
    )
    assert errors(browser) == []


def test_dose_page_charts_one_bar_per_protocol_and_filters_change_the_numbers(filled, browser):
    url = base(filled)
    browser.get(url + "/ui/dose")
    wait(browser, "return document.getElementById('ct-table').getAttribute('data-rows')")
    with urllib.request.urlopen(url + "/api/dose/ct-protocols") as r:
        protocols = json.loads(r.read())["rows"]
    points = browser.execute_script("return document.getElementById('ct-chart').getAttribute('data-points')")
    assert int(points) == 2 * len(protocols)  # median DLP and median CTDIvol per protocol
    assert XSS in [td.text for td in browser.find_elements("css selector", "#ct-table td")]
    browser.save_screenshot(str(ARTIFACTS / "dose-all.png"))
    browser.find_element("css selector", "input[name=protocol]").send_keys("E2E head")
    browser.execute_script("document.getElementById('ct-table').removeAttribute('data-rows')")
    browser.find_element("css selector", "#filters button[type=submit]").click()
    wait(browser, "return document.getElementById('ct-table').getAttribute('data-rows') === '1'")
    n = browser.find_elements("css selector", "#ct-table tbody td")[1].text
    assert int(n) == 10  # i % 3 == 1 of 30
    csv_href = browser.find_element("id", "csv-link").get_attribute("href")
    assert "protocol=E2E+head" in csv_href and "format=csv" in csv_href
    browser.save_screenshot(str(ARTIFACTS / "dose-filtered.png"))
    assert errors(browser) == []


def test_study_page_lists_the_events(filled, browser):
    browser.get(base(filled) + f"/ui/study/{PREFIX}4")
    wait(browser, "return document.getElementById('events-table').getAttribute('data-rows')")
    cells = [td.text for td in browser.find_elements("css selector", "#events-table td")]
    assert "E2E chest" in cells and "104" in cells  # DLP 100 + 4
    assert browser.find_element("id", "orthanc-link").get_attribute("href").count("#study?uuid=") == 1
    browser.save_screenshot(str(ARTIFACTS / "study.png"))
    assert errors(browser) == []


def test_orthanc_explorer_has_the_nmdose_button(filled, browser):
    browser.get(filled.cfg.research_node.http_url.rstrip("/") + "/app/explorer.html")
    wait(browser, "return document.getElementById('nmdose-home') !== null")
    browser.save_screenshot(str(ARTIFACTS / "orthanc-explorer.png"))
