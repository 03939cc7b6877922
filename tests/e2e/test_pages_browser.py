"""The pages in a real headless Chromium (Debian `chromium` + `chromium-driver`, driven by Selenium) against
the research Orthanc of the test stack: no console errors, charts with the expected number of points, the
Korean toggle, a StudyDescription `<script>` shown as text. Screenshots go to tests/_artifacts/."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import urllib.parse
import urllib.request

import pytest

from nmdose.db import connect
from tests.e2e.chromium import ARTIFACTS, errors, start, wait, webdriver_module

pytestmark = pytest.mark.integration

XSS = "<script>window.__xss = 1</script>"
PREFIX = "1.2.826.0.1.999."

webdriver_module()


# Study 0 ("E2E head", adult, CTDIvol 60 mGy, DLP 900 mGy.cm) is above the shipped UK head NDRLs (47 mGy per
# sequence, 790 mGy.cm per examination); it is also stored in the research Orthanc for the outlier link.
OUTLIER = f"{PREFIX}0"
AGENTS = {
    "Fluorodeoxyglucose F^18^": "PET-CT Whole Body FDG e2e",
    "Technetium Tc^99m^ medronate": "NM Bone e2e",
}


@pytest.fixture(scope="module")
def filled(stack):
    """Census, retrieval and dose rows in the stack's database, one study in the research Orthanc, two dose
    files in the dead letter (all removed afterwards)."""
    from nmdose.dose.derived import CT_K_SOURCE_ADULT, CT_K_SOURCE_CHILD, NM_E_SOURCE

    sources = json.dumps({"age_band_years": None, "notes": [],
                          "sources": {"ct_k_adult": CT_K_SOURCE_ADULT, "ct_k_child": CT_K_SOURCE_CHILD,
                                      "nm": NM_E_SOURCE}})  # fmt: skip
    with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        for i in range(30):
            uid = f"{PREFIX}{i}"
            date = dt.date(2022 + i % 3, 1 + i % 12, 10)
            desc = ["CT Head e2e", "CT Chest e2e", XSS][i % 3]
            ctdi, dlp = (60.0, 900.0) if i == 0 else (5.0 + i, 100.0 + i)
            cur.execute(
                """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found,
                   patient_id, is_target) VALUES (%s, 'simulationPACS', %s, %s, '{CT}', %s, %s)""",
                (uid, date, desc, f"E2E{i}", i % 4 != 0),
            )
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                   station_name, patient_age_years, patient_weight_kg, ct_event_count, ct_total_dlp_mgycm,
                   ct_effective_dose_msv, total_effective_dose_msv, derived)
                   VALUES (%s, %s, %s, %s, 'CT-E2E', %s, %s, 1, %s, %s, %s, %s)""",
                (uid, date, date.year, desc, 30.0 + i, 50.0 + i, dlp, dlp * 0.0145, dlp * 0.0145, sources),
            )
            cur.execute(
                """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                   acquisition_protocol, target_region, ctdivol_mgy, dlp_mgycm, k_msv_per_mgycm,
                   effective_dose_msv) VALUES (%s, '#0', 0, %s, %s, %s, 'Chest', %s, %s, 0.0145, %s)""",
                (uid, date, date.year, ["E2E head", "E2E chest", XSS][i % 3], ctdi, dlp, dlp * 0.0145),
            )
        for i, (agent, desc) in enumerate(list(AGENTS.items()) * 4, start=100):
            k = (i - 100) // 2  # FDG 200..260 MBq (2.9-3.7 MBq/kg), MDP 500..650 MBq (7.1-9.3 MBq/kg), 70 kg
            mbq = 200.0 + 20 * k if agent.startswith("Fluoro") else 500.0 + 50 * k
            uid, date = f"{PREFIX}{i}", dt.date(2023, 1 + i % 12, 12)
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                   station_name, patient_age_years, patient_weight_kg, nm_total_activity_mbq, derived)
                   VALUES (%s, %s, %s, %s, 'NM-E2E', 50, 70, %s, %s)""",
                (uid, date, date.year, desc, mbq, sources),
            )
            cur.execute(
                """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal,
                   study_date, study_year, source, agent, activity_mbq, activity_per_kg_mbq)
                   VALUES (%s, '#0', 0, %s, %s, 'rrdsr', %s, %s, %s)""",
                (uid, date, date.year, agent, mbq, mbq / 70),
            )
        for path in ("/e2e/broken.dcm", f"/e2e/{XSS}.dcm"):
            cur.execute(
                """INSERT INTO dose.dead_letter (key, file_path, source, error) VALUES (%s, %s, 'e2e', %s)""",
                (f"path:{path}", path, f"cannot parse {XSS}"),
            )
        conn.commit()
    from tests.integration.test_web_api import store_synthetic_study

    orthanc = stack.cfg.research_node.http_url.rstrip("/")
    stack.outlier_orthanc_id = store_synthetic_study(orthanc, OUTLIER, "E2E0")
    yield stack
    urllib.request.urlopen(
        urllib.request.Request(f"{orthanc}/studies/{stack.outlier_orthanc_id}", method="DELETE")
    ).close()
    with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dose.study WHERE study_instance_uid LIKE %s", (PREFIX + "%",))
        cur.execute("DELETE FROM rpacs.study WHERE study_uid LIKE %s", (PREFIX + "%",))
        cur.execute("DELETE FROM dose.dead_letter WHERE source = 'e2e'")
        conn.commit()


@pytest.fixture(scope="module")
def browser():
    driver = start()
    yield driver
    driver.quit()


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


def api_rows(stack, path: str, **query) -> dict:
    q = urllib.parse.urlencode(query)
    with urllib.request.urlopen(f"{base(stack)}/api/{path}" + (f"?{q}" if q else "")) as r:
        return json.loads(r.read())


def attr(browser, element_id: str, name: str):
    return browser.execute_script(f"return document.getElementById('{element_id}').getAttribute('{name}')")


def apply_filters(browser, marker: str = "outlier-table", **values):
    """Fill the filter form, submit it and wait until `marker` is filled again."""
    for name, value in values.items():
        field = browser.find_element("css selector", f"#filters [name={name}]")
        field.clear()
        field.send_keys(str(value))
    browser.execute_script(
        "document.querySelectorAll('table, canvas').forEach(function (el) {"
        " ['data-rows', 'data-points', 'data-ref-lines'].forEach(function (a) { el.removeAttribute(a); }); });"
    )  # answers to the earlier load are dropped by the page, so what comes next is the filtered data
    browser.find_element("css selector", "#filters button[type=submit]").click()
    wait(browser, f"return document.getElementById('{marker}').getAttribute('data-rows') !== null")


def test_dose_page_charts_one_bar_per_protocol_and_filters_change_the_numbers(filled, browser):
    url = base(filled)
    browser.get(url + "/ui/dose")
    wait(browser, "return document.getElementById('ct-table').getAttribute('data-rows')")
    wait(browser, "return document.getElementById('ct-chart').getAttribute('data-ref-lines') !== null")
    ctdivol = api_rows(filled, "dose/box", measure="ctdivol", group="protocol")["rows"]
    dlp = api_rows(filled, "dose/box", measure="dlp", group="protocol")["rows"]
    assert int(attr(browser, "ct-chart", "data-points")) == len(ctdivol) + len(
        dlp
    )  # a box per protocol, measure
    assert XSS in [td.text for td in browser.find_elements("css selector", "#ct-table td")]
    browser.find_element("css selector", "input[name=protocol]").send_keys("E2E head")
    browser.execute_script("document.getElementById('ct-table').removeAttribute('data-rows')")
    browser.find_element("css selector", "#filters button[type=submit]").click()
    wait(browser, "return document.getElementById('ct-table').getAttribute('data-rows') === '1'")
    n = browser.find_elements("css selector", "#ct-table tbody td")[1].text
    assert int(n) == 10  # i % 3 == 0 of 30
    csv_href = browser.find_element("id", "csv-link").get_attribute("href")
    assert "protocol=E2E+head" in csv_href and "format=csv" in csv_href
    browser.save_screenshot(str(ARTIFACTS / "dose-filtered.png"))
    assert errors(browser) == []


def test_dose_page_draws_box_plots_with_reference_lines_and_lists_outliers(filled, browser):
    browser.set_window_size(1400, 5200)
    browser.get(base(filled) + "/ui/dose")
    apply_filters(browser, station="CT-E2E")
    wait(browser, "return document.getElementById('ct-desc-chart').getAttribute('data-ref-lines') !== null")
    query = {"station": "CT-E2E"}
    boxes = {
        m: api_rows(filled, "dose/box", measure=m, group="protocol", **query)["rows"]
        for m in ("ctdivol", "dlp")
    }
    assert [r["protocol"] for r in boxes["ctdivol"]] == sorted(["E2E head", "E2E chest", XSS])
    assert int(attr(browser, "ct-chart", "data-points")) == 6  # 3 protocols x (CTDIvol, DLP)
    levels = sum(len(r["levels"]) for rows in boxes.values() for r in rows)
    head = next(r for r in boxes["ctdivol"] if r["protocol"] == "E2E head")
    assert "UK NDRL CT head (acute stroke): CTDIvol" in [lv["name"] for lv in head["levels"]]
    assert int(attr(browser, "ct-chart", "data-ref-lines")) == levels > 0  # one dashed line per level
    desc = api_rows(filled, "dose/box", measure="dlp", group="description", **query)["rows"]
    assert int(attr(browser, "ct-desc-chart", "data-points")) == 2 * len(desc) == 6
    assert int(attr(browser, "ct-desc-chart", "data-ref-lines")) == sum(len(r["levels"]) for r in desc) > 0

    outliers = api_rows(filled, "dose/outliers", **query)
    shown = browser.find_elements("css selector", "#outlier-table tbody tr")
    assert len(shown) == outliers["count"] > 0
    assert browser.find_element("id", "outlier-count").text == str(outliers["count"])
    above = [r for r in outliers["rows"] if r["reason"] == "reference_level"]
    assert {(r["study_instance_uid"], r["level_name"]) for r in above} == {
        (OUTLIER, "UK NDRL CT head (acute stroke): CTDIvol"), (OUTLIER, "UK NDRL CT head (acute stroke): DLP")
    }  # fmt: skip
    assert XSS in [td.text for td in browser.find_elements("css selector", "#outlier-table td")]
    browser.save_screenshot(str(ARTIFACTS / "dose-all.png"))
    browser.find_element("id", "ct-chart").screenshot(str(ARTIFACTS / "dose-ct-box.png"))
    assert errors(browser) == []

    # The outlier's Orthanc link lands on the study's page in Orthanc Explorer.
    browser.set_window_size(1400, 1800)
    row = next(tr for tr in shown if OUTLIER in tr.text)
    row.find_element("css selector", "a.orthanc-link").click()
    wait(browser, "return location.hash.indexOf('#study?uuid=') === 0")
    assert browser.current_url.endswith(f"/app/explorer.html#study?uuid={filled.outlier_orthanc_id}")
    wait(browser, "return document.body.innerText.indexOf('nmdose web test') >= 0")
    browser.save_screenshot(str(ARTIFACTS / "outlier-in-orthanc.png"))


def test_dose_page_activity_levels_effective_dose_dead_letters_and_korean(filled, browser):
    browser.set_window_size(1400, 5200)
    browser.get(base(filled) + "/ui/dose")
    apply_filters(browser, station="NM-E2E")
    wait(browser, "return document.getElementById('activity-chart').getAttribute('data-ref-lines') !== null")
    per_kg = api_rows(filled, "dose/box", measure="per_kg", group="agent", station="NM-E2E")["rows"]
    assert int(attr(browser, "activity-chart", "data-points")) == 2 * len(AGENTS)
    assert int(attr(browser, "activity-chart", "data-ref-lines")) == 2  # BfS bone, ARSAC FDG (MBq/kg)
    browser.find_element("id", "activity-chart").screenshot(str(ARTIFACTS / "dose-activity-box.png"))
    assert {lv["status"] for r in per_kg for lv in r["levels"]} == {"official", "proposed"}
    cells = " ".join(td.text for td in browser.find_elements("css selector", "#outlier-table td"))
    assert "proposed, not an adopted DRL" in cells  # a proposal is never shown as an official level
    above = api_rows(filled, "dose/outliers", station="NM-E2E", reason="reference_level")["rows"]
    assert sorted((r["group"], round(r["value"] * 70, 6)) for r in above) == [
        ("Fluorodeoxyglucose F^18^", 260.0), ("Technetium Tc^99m^ medronate", 600.0),
        ("Technetium Tc^99m^ medronate", 650.0),
    ]  # fmt: skip
    levels = [td.text for td in browser.find_elements("css selector", "#levels-table td")]
    assert "UK NDRL CT chest (lung cancer): CTDIvol" in levels and "8.50 mGy" in levels

    effective = api_rows(filled, "dose/effective-dose", station="CT-E2E")["rows"]
    apply_filters(browser, "effective-table", station="CT-E2E")
    rows = browser.find_elements("css selector", "#effective-table tbody tr")
    assert len(rows) == len(effective) == 3
    chest = next(r for r in rows if r.text.startswith("CT Chest e2e"))
    expected = next(r for r in effective if r["description"] == "CT Chest e2e")
    assert f"{expected['ct_median']:.2f}" in chest.text and "Deak" in chest.text

    dead = api_rows(filled, "dose/dead-letter")
    assert browser.find_element("id", "dead-letter-count").text == str(dead["open"])
    files = [td.text for td in browser.find_elements("css selector", "#dead-letter-table td")]
    assert f"/e2e/{XSS}.dcm" in files and browser.execute_script("return window.__xss") is None

    browser.find_element("id", "lang-toggle").click()
    assert browser.find_element("css selector", "[data-i18n='dose.outliers']").text == "이상값"
    assert browser.find_element("css selector", "#levels-table th[data-i18n='col.status']").text == "상태"
    browser.save_screenshot(str(ARTIFACTS / "dose-ko.png"))
    browser.find_element("id", "lang-toggle").click()
    assert errors(browser) == []


def test_xlsx_link_exports_the_filtered_events_one_sheet_per_protocol(filled, browser):
    import openpyxl

    browser.get(base(filled) + "/ui/dose")
    apply_filters(browser, station="CT-E2E", age_min=35, age_max=50)
    href = browser.find_element("id", "xlsx-link").get_attribute("href")
    assert "format=xlsx" in href and "age_min=35" in href and "station=CT-E2E" in href
    with urllib.request.urlopen(href) as r:
        wb = openpyxl.load_workbook(io.BytesIO(r.read()))
    rows = api_rows(filled, "dose/ct-events", station="CT-E2E", age_min=35, age_max=50)["rows"]
    assert len(rows) == 15  # ages 30 + i: i = 5..19
    assert wb.sheetnames[0] == "Summary" and len(wb.sheetnames) == 4
    exported = []
    for ws in wb.worksheets[1:]:
        values = [[c.value for c in r] for r in ws.iter_rows()]
        exported += [dict(zip(values[0], v, strict=True)) for v in values[1:]]

    def key(r):
        return r["study_instance_uid"], r["ordinal"], r["dlp_mgycm"], r["acquisition_protocol"]

    assert sorted(map(key, exported)) == sorted(map(key, rows))
    assert errors(browser) == []


def test_study_page_lists_the_events_and_each_coefficient_with_its_source(filled, browser):
    from nmdose.dose.derived import CT_K_SOURCE_ADULT

    browser.set_window_size(1400, 1800)
    browser.get(base(filled) + f"/ui/study/{PREFIX}4")
    wait(browser, "return document.getElementById('events-table').getAttribute('data-rows')")
    cells = [td.text for td in browser.find_elements("css selector", "#events-table td")]
    assert "E2E chest" in cells and "104" in cells  # DLP 100 + 4
    assert browser.find_element("id", "orthanc-link").get_attribute("href").count("#study?uuid=") == 1
    effective = [td.text for td in browser.find_elements("css selector", "#study-effective-table td")]
    assert "0.0145 mSv/(mGy·cm)" in effective and CT_K_SOURCE_ADULT in effective
    assert f"{104 * 0.0145:.2f}" in effective
    browser.save_screenshot(str(ARTIFACTS / "study.png"))
    assert errors(browser) == []


def test_orthanc_explorer_has_the_nmdose_button(filled, browser):
    browser.get(filled.cfg.research_node.http_url.rstrip("/") + "/app/explorer.html")
    wait(browser, "return document.getElementById('nmdose-home') !== null")
    browser.save_screenshot(str(ARTIFACTS / "orthanc-explorer.png"))


def test_orthanc_explorer_study_page_has_dose_for_this_study(filled, browser):
    """The legacy Orthanc Explorer's study page gets "dose for this study", which opens the nmdose study page
    of that StudyInstanceUID in a new window."""
    browser.set_window_size(1400, 1800)
    browser.get(
        filled.cfg.research_node.http_url.rstrip("/")
        + f"/app/explorer.html#study?uuid={filled.outlier_orthanc_id}"
    )
    wait(browser, "return document.body.innerText.indexOf('nmdose web test') >= 0")
    wait(
        browser,
        "var b = document.getElementById('nmdose-study-dose'); return b !== null && b.offsetParent !== null",
    )
    before = set(browser.window_handles)
    browser.find_element("id", "nmdose-study-dose").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 15).until(lambda d: len(set(d.window_handles) - before) == 1)
    (opened,) = set(browser.window_handles) - before
    main = browser.current_window_handle
    browser.switch_to.window(opened)
    try:
        wait(
            browser,
            "return document.getElementById('events-table') && document.getElementById('events-table').getAttribute('data-rows')",
        )
        assert browser.current_url.endswith(f"/nmdose/ui/study/{OUTLIER}")
        assert int(browser.find_element("id", "events-table").get_attribute("data-rows")) >= 1
        browser.save_screenshot(str(ARTIFACTS / "orthanc-study-dose-button.png"))
        assert errors(browser) == []
    finally:
        browser.close()
        browser.switch_to.window(main)
