"""The report page (/nmdose/ui/report, issue 19) in a real headless Chromium against the research Orthanc of the
test stack: the comparison table with its flags, the trend chart on a time axis, the histogram, the workload heat
table, the annual report; in Korean no English label is left; the print view prints to a readable A4 PDF without
navigation or inputs. Screenshots and the PDF go to tests/_artifacts/."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt

import pytest

from nmdose.db import connect
from tests.e2e.chromium import ARTIFACTS, errors, start, wait, webdriver_module

pytestmark = pytest.mark.integration

PREFIX = "1.2.826.0.1.998."
webdriver_module()

# Texts that are the same in both languages: units, abbreviations, symbols, hours.
SAME_IN_BOTH = {"", "CSV", "XLSX", "CTDIvol (mGy)", "DLP (mGy·cm)", "CT"} | {f"{h:02d}" for h in range(24)}


@pytest.fixture(scope="module")
def filled(stack):
    """30 CT studies in 2023-2024 (head protocol above the shipped UK head NDRL of 47 mGy for some), 10 FDG."""
    with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        for i in range(40):
            uid = f"{PREFIX}{i}"
            date = dt.date(2023 + i % 2, 1 + i % 12, 3 + i % 20)
            ct = i < 30
            desc = ["CT Head report-e2e", "CT Chest report-e2e"][i % 2] if ct else "PET-CT WB report-e2e"
            ctdi = 20.0 + 3 * i
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_time,
                       study_description, station_name, patient_age_years, patient_weight_kg, ct_event_count,
                       ct_total_dlp_mgycm, ct_mean_ctdivol_mgy)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, 70, %s, %s, %s)""",
                (uid, date, date.year, dt.time(8 + i % 9, 10), desc, ["CT-A", "CT-B"][i % 3 == 0],
                 4.0 if i % 10 == 3 else 40.0 + i, 1 if ct else 0, ctdi * 20 if ct else None,
                 ctdi if ct else None),
            )  # fmt: skip
            if ct:
                cur.execute(
                    """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                           acquisition_protocol, target_region, ctdivol_mgy, dlp_mgycm)
                       VALUES (%s, '#0', 0, %s, %s, %s, 'Head', %s, %s)""",
                    (uid, date, date.year, ["Head report-e2e", "Chest report-e2e"][i % 2], ctdi, ctdi * 20),
                )
            else:
                cur.execute(
                    """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal,
                           study_date, study_year, source, agent, activity_mbq, activity_per_kg_mbq)
                       VALUES (%s, '#0', 0, %s, %s, 'rrdsr', 'Fluorodeoxyglucose F^18^', %s, %s)""",
                    (uid, date, date.year, 250.0 + i, (250.0 + i) / 70),
                )
        conn.commit()
    yield stack
    with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dose.study WHERE study_instance_uid LIKE %s", (PREFIX + "%",))
        conn.commit()


@pytest.fixture(scope="module")
def browser():
    driver = start()
    yield driver
    driver.quit()


def base(stack) -> str:
    return stack.cfg.research_node.http_url.rstrip("/") + "/nmdose"


TABLES = ("rp-levels-table", "rp-trend-table", "rp-workload-table", "rp-annual-levels", "rp-annual-protocols",
          "rp-annual-agents", "rp-annual-workload")  # fmt: skip


def _open(browser, url: str) -> None:
    browser.get(url)
    browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")
    browser.get(url)
    for table in TABLES:
        wait(browser, f"return document.getElementById('{table}').getAttribute('data-rows')")


def _labels(browser) -> tuple[dict, list[str]]:
    labelled = browser.execute_script(
        "return Array.from(document.querySelectorAll('main [data-i18n], [data-i18n=\"nav.report\"]')).map("
        "function (el, i) {"
        " return [i, el.getAttribute('data-i18n'), el.getAttribute('data-i18n-vars') || '', el.textContent]; })"
    )
    headers = browser.execute_script(
        "return Array.from(document.querySelectorAll('main th')).map(function (th) { return th.textContent; })"
    )
    return {(i, k, v): text for i, k, v, text in labelled}, headers


def test_the_report_page_shows_the_comparison_trends_histogram_workload_and_annual_report(filled, browser):
    _open(browser, base(filled) + "/ui/report?year=2024")
    try:
        rows = browser.execute_script(
            "return Array.from(document.querySelectorAll('#rp-levels-table tbody tr')).map("
            "function (tr) { return Array.from(tr.cells).map(function (td) { return td.textContent; }); })"
        )
        head = [r for r in rows if r[0] == "Head report-e2e"]
        assert head and {r[1] for r in head} <= {"CT-A", "CT-B"}
        # the shipped UK head NDRL (47 mGy per sequence, adults): a median above it flagged, the ratio shown
        flagged = [r for r in head if r[-1] == "⚠ above"]
        assert flagged and all(float(r[-2]) > 1 for r in flagged)
        assert all(r[-1] == "no level applies" for r in rows if r[0] == "Chest report-e2e")
        wait(browser, "return document.getElementById('rp-trend-chart').getAttribute('data-points')")
        assert int(browser.find_element("id", "rp-trend-chart").get_attribute("data-points")) > 0
        assert int(browser.find_element("id", "rp-hist-chart").get_attribute("data-points")) > 0
        assert browser.find_element("id", "rp-workload-table").get_attribute("data-rows") == "7"
        shaded = browser.execute_script(
            "return Array.from(document.querySelectorAll('#rp-workload-table td'))"
            ".filter(function (td) { return td.style.backgroundColor; }).length"
        )
        assert shaded > 0
        assert "2024" in browser.find_element("id", "rp-annual-title").text
        assert browser.find_element("id", "rp-generated").text.startswith("Generated 20")
        xlsx = browser.find_element("id", "rp-annual-xlsx").get_attribute("href")
        assert xlsx.endswith("/api/dose/report/annual?year=2024&format=xlsx")
        browser.save_screenshot(str(ARTIFACTS / "report-en.png"))
        assert errors(browser) == []
    finally:
        browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")


def test_in_korean_the_report_page_shows_no_english_label(filled, browser):
    _open(browser, base(filled) + "/ui/report?year=2024")
    try:
        en, en_headers = _labels(browser)
        browser.find_element("id", "lang-toggle").click()
        ko, ko_headers = _labels(browser)
        assert browser.execute_script("return document.documentElement.lang") == "ko"
        english = {
            k: text for k, text in en.items() if ko.get(k) == text and text.strip() not in SAME_IN_BOTH
        }
        assert english == {}
        assert len(ko_headers) == len(en_headers) > 30
        untranslated = [
            e for e, k in zip(en_headers, ko_headers, strict=True) if e == k and e not in SAME_IN_BOTH
        ]
        assert untranslated == []
        assert "초과" in browser.find_element("id", "rp-levels-table").text
        browser.save_screenshot(str(ARTIFACTS / "report-ko.png"))
    finally:
        browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")


def test_the_print_view_is_the_annual_report_alone_and_prints_to_a4(filled, browser):
    url = base(filled) + "/ui/report/print?year=2024"
    browser.get(url)
    browser.execute_script("localStorage.setItem('nmdose.lang', 'ko')")
    try:
        browser.get(url)
        for table in TABLES[3:]:
            wait(browser, f"return document.getElementById('{table}').getAttribute('data-rows')")
        visible = browser.execute_script(
            "return ['header', '#rp-filters', '#rp-annual-form', '#rp-levels-table'].map(function (s) {"
            " return document.querySelector(s).offsetParent !== null; })"
        )
        assert visible == [False, False, False, False]
        assert browser.find_element("id", "rp-annual-title").text == "2024년 연간 선량 보고서"
        assert browser.find_element("id", "rp-generated").text.startswith("작성 2")
        assert browser.find_element("id", "rp-print").is_displayed()
        assert int(browser.find_element("id", "rp-annual-levels").get_attribute("data-rows")) > 0
        browser.save_screenshot(str(ARTIFACTS / "report-print-ko.png"))
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        assert not browser.find_element("id", "rp-print").is_displayed()  # the button stays off the paper
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
        pdf = base64.b64decode(
            browser.execute_cdp_cmd("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69})["data"]
        )
        assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
        (ARTIFACTS / "report-print-2024.pdf").write_bytes(pdf)
        assert errors(browser) == []
    finally:
        browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")


SIZE_PREFIX = "1.2.826.0.1.997."
BONE = "Technetium Tc^99m^ medronate"


@pytest.fixture(scope="module")
def sized(filled):
    """Besides `filled`: 8 FDG PET-CT whole-body studies and 6 bone scans of adults weighing 50-99 kg, and one of
    each without a weight (the shipped levels: 3.5 MBq/kg FDG whole body, 8 MBq/kg bone scintigraphy)."""
    with contextlib.closing(connect(filled.cfg)) as conn, conn.cursor() as cur:
        for i in range(16):
            uid = f"{SIZE_PREFIX}{i}"
            fdg = i < 9
            weight = None if i in (0, 9) else 50.0 + 7 * i
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_time,
                       study_description, station_name, patient_age_years, patient_weight_kg, ct_event_count)
                   VALUES (%s, '2024-06-03', 2024, '09:00', %s, 'NM-SIZE', 55, %s, 0)""",
                (uid, "PET-CT WB size-e2e" if fdg else "Bone scan size-e2e", weight),
            )
            cur.execute(
                """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal,
                       study_date, study_year, source, agent, activity_mbq, activity_per_kg_mbq)
                   VALUES (%s, '#0', 0, '2024-06-03', 2024, 'rrdsr', %s, %s, %s)""",
                (uid, "Fluorodeoxyglucose F^18^" if fdg else BONE, 200.0 + 20 * i,
                 None if weight is None else (200.0 + 20 * i) / weight),
            )  # fmt: skip
        conn.commit()
    yield filled
    with contextlib.closing(connect(filled.cfg)) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dose.study WHERE study_instance_uid LIKE %s", (SIZE_PREFIX + "%",))
        conn.commit()


def _datasets(browser, canvas: str) -> list[dict]:
    """The chart's datasets: label, whether a level line, the slope of a line (y / x of its last point)."""
    return browser.execute_script(
        "return Chart.getChart(document.getElementById(arguments[0])).data.datasets.map(function (ds) {"
        " var last = ds.data[ds.data.length - 1];"
        " return {label: ds.label, line: ds.type === 'line', n: ds.data.length,"
        "         slope: ds.type === 'line' && last ? last.y / last.x : null,"
        "         flat: ds.type === 'line' && ds.data.length === 2 ? ds.data[0].y === ds.data[1].y : null}; })",
        canvas,
    )


def _axis_titles(browser, canvas: str) -> list[str]:
    return browser.execute_script(
        "var o = Chart.getChart(document.getElementById(arguments[0])).options.scales;"
        " return [o.x.title.text, o.y.title.text];",
        canvas,
    )


def test_the_report_draws_activity_against_weight_per_agent_with_the_mbq_per_kg_lines_in_both_languages(
    sized, browser
):
    _open(browser, base(sized) + "/ui/report?year=2024")
    try:
        wait(browser, "return document.getElementById('rp-size-nm-chart').getAttribute('data-level-lines')")
        wait(browser, "return document.getElementById('rp-size-table').getAttribute('data-rows')")
        nm = _datasets(browser, "rp-size-nm-chart")
        points = {d["label"]: d["n"] for d in nm if not d["line"]}
        assert points["¹⁸F-FDG"] >= 8 + 10  # 8 weighed here, 10 of `filled` at 70 kg
        bone = [k for k in points if "medronate" in k.lower() or "MDP" in k]
        assert len(bone) == 1 and points[bone[0]] == 6  # the one without a weight is not drawn
        lines = [d for d in nm if d["line"]]
        slopes = sorted(round(d["slope"], 3) for d in lines if not d["flat"])
        assert slopes == [3.5, 8.0]  # level x weight, through zero
        assert all("reference level" in d["label"] and "part" in d["label"] for d in lines)
        canvas = browser.find_element("id", "rp-size-nm-chart")
        assert int(canvas.get_attribute("data-datasets")) == len(points) >= 2
        assert canvas.get_attribute("data-level-lines") == str(len(lines))
        assert _axis_titles(browser, "rp-size-nm-chart") == ["Patient weight (kg)", "Activity (MBq)"]
        missing = browser.find_element("id", "rp-size-missing").text
        assert missing.startswith("Without a patient weight") and " 2 NM / PET studies" in missing
        ct = _datasets(browser, "rp-size-ct-chart")
        assert {d["label"] for d in ct if not d["line"]} >= {"Head report-e2e", "Chest report-e2e"}
        # one agent chosen: its points and its line only
        select = browser.find_element("id", "rp-size-nm-group")
        next(
            o for o in select.find_elements("tag name", "option") if o.get_attribute("value") == "¹⁸F-FDG"
        ).click()
        one = _datasets(browser, "rp-size-nm-chart")
        assert [d["label"] for d in one if not d["line"]] == ["¹⁸F-FDG"]
        assert [round(d["slope"], 3) for d in one if d["line"]] == [3.5]
        browser.save_screenshot(str(ARTIFACTS / "report-size-en.png"))

        browser.find_element("id", "lang-toggle").click()
        wait(browser, "return document.documentElement.lang === 'ko'")
        ko = _datasets(browser, "rp-size-nm-chart")
        assert all("참고수준" in d["label"] and "일부" in d["label"] for d in ko if d["line"])
        assert not any("reference level" in d["label"] or "part" in d["label"] for d in ko)
        assert _axis_titles(browser, "rp-size-nm-chart") == ["환자 체중 (kg)", "투여 방사능 (MBq)"]
        assert _axis_titles(browser, "rp-size-ct-chart")[0] == "환자 체중 (kg)"
        assert browser.find_element("id", "rp-size-missing").text.startswith("환자 체중이 없는 검사")
        headers = [th.text for th in browser.find_elements("css selector", "#rp-size-table th")]
        assert headers[:3] == ["종류", "그룹", "건수"] and "참고수준" in headers
        browser.save_screenshot(str(ARTIFACTS / "report-size-ko.png"))
        assert errors(browser) == []
    finally:
        browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")


def test_the_dose_page_scatter_has_a_colour_per_agent_and_the_mbq_per_kg_lines(sized, browser):
    url = base(sized) + "/ui/dose"
    browser.get(url)
    browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")
    browser.get(url)
    try:
        wait(browser, "return document.getElementById('scatter-chart').getAttribute('data-level-lines')")
        got = _datasets(browser, "scatter-chart")
        agents = [d for d in got if not d["line"]]
        colours = browser.execute_script(
            "return Chart.getChart(document.getElementById('scatter-chart')).data.datasets"
            ".filter(function (ds) { return ds.type !== 'line'; }).map(function (ds) { return ds.backgroundColor; })"
        )
        assert len(agents) >= 2 and len(set(colours)) == len(colours)
        assert "¹⁸F-FDG" in {d["label"] for d in agents}
        lines = [d for d in got if d["line"]]
        assert sorted(round(d["slope"], 3) for d in lines if not d["flat"]) == [3.5, 8.0]
        assert all("Reference level" in d["label"] and "MBq/kg" in d["label"] for d in lines)
        assert browser.find_element("id", "scatter-chart").get_attribute("data-datasets") == str(len(agents))
        browser.find_element("id", "lang-toggle").click()
        wait(browser, "return document.documentElement.lang === 'ko'")
        ko = _datasets(browser, "scatter-chart")
        assert all("진단참고수준" in d["label"] for d in ko if d["line"])
        assert not any("Reference level" in d["label"] for d in ko)
        assert _axis_titles(browser, "scatter-chart") == ["환자 체중 (kg)", "투여 방사능 (MBq)"]
        browser.save_screenshot(str(ARTIFACTS / "dose-scatter-ko.png"))
    finally:
        browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")
