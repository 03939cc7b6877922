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


# Study 0 ("E2E head", adult, CTDIvol 100 mGy, DLP 1700 mGy.cm) is above twice the shipped UK head NDRLs (47 mGy
# per sequence, 790 mGy.cm per examination: the outlier list flags a single exam above 2 x the level); it is also
# stored in the research Orthanc for the outlier link.
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
            ctdi, dlp = (100.0, 1700.0) if i == 0 else (5.0 + i, 100.0 + i)
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
        # FDG 200..260 MBq (2.9-3.7 MBq/kg), MDP 500..650 MBq (7.1-9.3 MBq/kg), 70 kg; then one MDP of 1200 MBq
        # (17.1 MBq/kg: above 2 x the official BfS 8 MBq/kg) and one FDG of 500 MBq (7.1 MBq/kg: above 2 x the
        # proposed ARSAC 3.5 MBq/kg, listed only when the proposed levels are asked for)
        extra = [("Technetium Tc^99m^ medronate", 1200.0), ("Fluorodeoxyglucose F^18^", 500.0)]
        for i, (agent, desc) in enumerate(
            list(AGENTS.items()) * 4 + [(a, AGENTS[a]) for a, _ in extra], start=100
        ):
            k = (i - 100) // 2
            mbq = 200.0 + 20 * k if agent.startswith("Fluoro") else 500.0 + 50 * k
            if i >= 108:
                mbq = dict(extra)[agent]
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
    # The backfill estimate (GET /retrieve/estimate) replaces its placeholder with what the API answers.
    estimate = wait(browser, "var t = document.getElementById('retrieve-estimate').textContent;"
                    " return t !== '…' && t")  # fmt: skip
    with urllib.request.urlopen(url + "/retrieve/estimate") as r:
        answer = json.loads(r.read())
    assert (
        (str(answer["pending_studies"]) in estimate) if answer["pending_studies"] else "nothing" in estimate
    )
    # Progress as sentences, not the API's key=value dump (issue 19).
    census = wait(
        browser, "var t = document.getElementById('census-status').textContent; return t !== '…' && t"
    )
    retrieval = wait(browser, "var t = document.getElementById('retrieve-status').textContent;"
                     " return t !== '…' && t")  # fmt: skip
    assert "=" not in census and "=" not in retrieval, (census, retrieval)
    assert "studies" in retrieval
    browser.save_screenshot(str(ARTIFACTS / "research-en.png"))
    assert errors(browser) == []


PROGRESS = ("census-status", "retrieve-status", "retrieve-estimate")
# Click the toggle and read the research page's progress lines in one script: no status poll can answer between
# the two, so the lines are in the new language because the toggle wrote them again (nmdose.onLang).
TOGGLE_AND_READ_PROGRESS = (
    "document.getElementById('lang-toggle').click();"
    f" return {list(PROGRESS)}.map(function (id) {{ return document.getElementById(id).textContent; }});"
)


def hangul(text: str) -> bool:
    return any("\uac00" <= c <= "\ud7a3" for c in text)


def test_korean_toggle_relabels_the_page(filled, browser):
    browser.get(base(filled) + "/ui/research")
    wait(browser, "return document.getElementById('yearly-table').getAttribute('data-rows')")
    for element_id in PROGRESS:
        wait(browser, f"var t = document.getElementById('{element_id}').textContent; return t !== '…' && t")
    english = [browser.find_element("id", i).text for i in PROGRESS]
    assert not any(hangul(t) for t in english), english
    korean = browser.execute_script(TOGGLE_AND_READ_PROGRESS)  # at once, not at the next 5 s poll
    assert all(hangul(t) for t in korean), korean
    assert not any(hangul(t) for t in browser.execute_script(TOGGLE_AND_READ_PROGRESS))
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


def _on_index(browser, url: str) -> None:
    wait(browser, "return document.body && document.body.getAttribute('data-page') === 'index'")
    assert browser.current_url == url + "/ui/index"


def test_home_from_every_page_and_the_typed_addresses_land_on_the_index_whose_links_work(filled, browser):
    """Issue 19: 'Home' went to /nmdose/ui/, which Orthanc hands over as /ui: a 302 to /nmdose/ui/ui/ and a 404."""
    url = base(filled)
    pages = ["/ui/research", "/ui/dose", f"/ui/study/{PREFIX}4", "/ui/index", "/ui/orthanc/study/9.9.9.404"]
    for path in pages:
        browser.get(url + path)
        wait(browser, "return document.querySelector('header nav a[data-i18n=\"nav.home\"]') !== null")
        browser.find_element("css selector", "header nav a[data-i18n='nav.home']").click()
        _on_index(browser, url)
    for typed in ("/ui", "/ui/", "/index"):
        browser.get(url + typed)
        _on_index(browser, url)
    for key, page in (("nav.research", "research"), ("nav.dose", "dose")):
        browser.get(url + "/ui/index")
        browser.find_element("css selector", f"main a[data-i18n='{key}']").click()
        wait(browser, f"return document.body.getAttribute('data-page') === '{page}'")
        assert browser.current_url == f"{url}/ui/{page}"
    browser.get(url + "/ui/index")
    browser.find_element("css selector", "main a[data-i18n='nav.orthanc']").click()
    wait(browser, "return location.pathname === '/app/explorer.html'")
    assert [e for e in errors(browser) if "9.9.9.404" not in e] == []  # that page is a 404 on purpose


def api_rows(stack, path: str, **query) -> dict:
    q = urllib.parse.urlencode(query)
    with urllib.request.urlopen(f"{base(stack)}/api/{path}" + (f"?{q}" if q else "")) as r:
        return json.loads(r.read())


def attr(browser, element_id: str, name: str):
    return browser.execute_script(f"return document.getElementById('{element_id}').getAttribute('{name}')")


def apply_filters(browser, marker: str = "outlier-table", **values):
    """Fill the filter form, submit it and wait until `marker` is filled again."""
    # the answers of the page's earlier load first: one arriving between the clean-up below and the click would
    # mark `marker` as filled with the unfiltered data
    wait(browser, f"return document.getElementById('{marker}').getAttribute('data-rows') !== null")
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


def _cached(stack) -> set[tuple]:
    """The answers in the web cache for the current dose data, with when each was computed."""
    with contextlib.closing(connect(stack.cfg, role="web")) as conn, conn.cursor() as cur:
        cur.execute("SELECT key, computed_at FROM dose.web_cache WHERE data_version = dose.data_version()")
        return set(cur.fetchall())


def test_the_dose_page_opens_with_the_default_views_and_finds_them_in_the_warm_cache(filled, browser):
    """The dose page's opening requests are DEFAULT_VIEWS (web/dose_views.py, handed to the page in its
    data-page-data): exactly what the dose worker computes after an ingest, so the page computes nothing."""
    from nmdose.web.dose_views import DEFAULT_VIEWS, view_path, warm_default_views

    with contextlib.closing(connect(filled.cfg, role="web")) as conn:
        warm_default_views(conn, filled.cfg)
    warm = _cached(filled)
    browser.get(base(filled) + "/ui/dose")
    for table in ("ct-table", "ct-desc-table", "activity-table", "effective-table", "outlier-table"):
        wait(browser, f"return document.getElementById('{table}').getAttribute('data-rows')")
    for canvas in ("ct-chart", "ct-desc-chart", "activity-chart", "monthly-chart", "scatter-chart"):
        wait(browser, f"return document.getElementById('{canvas}').getAttribute('data-points')")
    page_data = json.loads(browser.execute_script("return document.body.getAttribute('data-page-data')"))
    assert [(v["path"], v["params"]) for v in page_data["views"]] == [
        (view_path(route).removeprefix("/api/"), f) for route, f in DEFAULT_VIEWS
    ]
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })"
    )
    asked = sorted(
        (u.path.removeprefix("/nmdose"), sorted(urllib.parse.parse_qsl(u.query)))
        for u in map(urllib.parse.urlsplit, urls)
        if u.path.startswith("/nmdose/api/dose/")
        and u.path not in ("/nmdose/api/dose/reference-levels", "/nmdose/api/dose/dead-letter")
    )
    assert asked == sorted(
        (view_path(route), sorted((k, str(v)) for k, v in f.items())) for route, f in DEFAULT_VIEWS
    )
    assert _cached(filled) == warm  # every opening answer was found: none computed, none stored
    assert errors(browser) == []


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
    assert len(shown) == outliers["count"] == outliers["total"] > 0
    assert browser.find_element("id", "outlier-count").text == str(outliers["total"])
    assert "above 2 × the official reference level" in browser.find_element("id", "outlier-rule").text
    above = [r for r in outliers["rows"] if r["reason"] == "reference_level"]
    assert {(r["study_instance_uid"], r["level_name"]) for r in above} == {
        (OUTLIER, "UK NDRL CT head (acute stroke): CTDIvol"), (OUTLIER, "UK NDRL CT head (acute stroke): DLP")
    }  # fmt: skip
    assert browser.execute_script("return window.__xss") is None
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
    assert "proposed" not in cells and "official DRL" in cells  # official levels only by default
    above = api_rows(filled, "dose/outliers", station="NM-E2E", reason="reference_level")["rows"]
    assert [(r["group"], r["agent_code_meaning"], round(r["value"] * 70, 6)) for r in above] == [
        ("⁹⁹ᵐTc-MDP", "Technetium Tc^99m^ medronate", 1200.0)
    ]
    every = api_rows(filled, "dose/outliers", station="NM-E2E", reason="reference_level", levels="all")[
        "rows"
    ]
    assert sorted((r["group"], round(r["value"] * 70, 6), r["level_status"]) for r in every) == [
        ("¹⁸F-FDG", 500.0, "proposed"), ("⁹⁹ᵐTc-MDP", 1200.0, "official"),
    ]  # fmt: skip
    from selenium.webdriver.support.ui import Select

    browser.execute_script("document.getElementById('outlier-table').removeAttribute('data-rows')")
    Select(browser.find_element("id", "outlier-levels")).select_by_value("all")
    wait(browser, "return document.getElementById('outlier-table').getAttribute('data-rows') === '2'")
    cells = " ".join(td.text for td in browser.find_elements("css selector", "#outlier-table td"))
    assert "proposed, not an adopted DRL" in cells  # a proposal is never shown as an official level
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


def test_orthanc_explorer_has_one_nmdose_button_and_it_opens_the_index(filled, browser):
    browser.get(filled.cfg.research_node.http_url.rstrip("/") + "/app/explorer.html")
    wait(browser, "return document.getElementById('nmdose-home') !== null")
    wait(browser, "return document.body.innerText.indexOf('nmdose') >= 0")
    browser.save_screenshot(str(ARTIFACTS / "orthanc-explorer.png"))
    buttons = browser.execute_script(
        "return Array.from(document.querySelectorAll('a')).filter(function (a) {"
        " return a.offsetParent !== null && /nmdose/.test(a.getAttribute('href') || ''); })"
        ".map(function (a) { return a.id + ' ' + a.getAttribute('href'); })"
    )
    assert len(buttons) == 1, buttons
    browser.find_element("id", "nmdose-home").click()
    _on_index(browser, base(filled))


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


def test_the_outlier_table_is_paged_with_next_and_previous_and_filtered_by_reason(filled, browser):
    """Issue 19: the outlier table was one 28,769 px table. Now pages of DEFAULT_VIEWS' limit (50) rows, the total
    in the heading, Previous / Next, and a reason selector."""
    from selenium.webdriver.support.ui import Select

    from nmdose.web.dose_views import OUTLIER_PAGE

    prefix = "1.2.826.0.1.998."
    with contextlib.closing(connect(filled.cfg)) as conn, conn.cursor() as cur:
        # CT head exams above 2 x the UK head levels: two hits each (CTDIvol, DLP), and 3 + 3 above the p95 of
        # their protocol (60 values)
        for i in range(60):
            uid, date = f"{prefix}{i}", dt.date(2024, 1 + i % 12, 1 + i % 28)
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                   station_name, patient_age_years, ct_event_count, ct_total_dlp_mgycm)
                   VALUES (%s, %s, %s, 'CT Head paging', 'CT-PAGE', 40, 1, %s)""",
                (uid, date, date.year, 1600.0 + i),
            )
            cur.execute(
                """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                   acquisition_protocol, target_region, ctdivol_mgy, dlp_mgycm)
                   VALUES (%s, '#0', 0, %s, %s, 'Head paging', 'Head', %s, %s)""",
                (uid, date, date.year, 95.0 + i, 1600.0 + i),
            )
        conn.commit()
    total = 126
    try:
        url = base(filled)
        browser.get(url + "/ui/dose")
        apply_filters(browser, station="CT-PAGE")
        full = api_rows(filled, "dose/outliers", station="CT-PAGE", limit=1000)
        assert full["total"] == total and OUTLIER_PAGE == 50
        assert browser.find_element("id", "outlier-count").text == str(total)
        seen = []
        for page in range(3):
            rows = browser.find_elements("css selector", "#outlier-table tbody tr")
            assert len(rows) == min(50, total - 50 * page)
            seen += [r.find_element("css selector", "td:nth-child(2)").text for r in rows]
            assert browser.find_element("id", "outlier-prev").is_enabled() == (page > 0)
            assert browser.find_element("id", "outlier-next").is_enabled() == (page < 2)
            if page < 2:
                browser.execute_script(
                    "document.getElementById('outlier-table').removeAttribute('data-rows')"
                )
                browser.find_element("id", "outlier-next").click()
                wait(
                    browser,
                    "return document.getElementById('outlier-table').getAttribute('data-rows') !== null",
                )
        assert seen == [r["study_instance_uid"] for r in full["rows"]]
        assert browser.find_element("id", "outlier-page").text == "101–126 of 126"
        browser.find_element("id", "outlier-prev").click()
        wait(browser, "return document.getElementById('outlier-page').textContent === '51–100 of 126'")
        Select(browser.find_element("id", "outlier-reason")).select_by_value("p95")
        wait(browser, "return document.getElementById('outlier-page').textContent.indexOf('of 6') > 0")
        p95 = api_rows(filled, "dose/outliers", station="CT-PAGE", reason="p95")
        assert (
            browser.find_element("id", "outlier-count").text == str(p95["total"]) == "6"
        )  # 60 values per group
        assert errors(browser) == []
    finally:
        with contextlib.closing(connect(filled.cfg)) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM dose.study WHERE study_instance_uid LIKE %s", (prefix + "%",))
            conn.commit()


def test_a_refused_filter_clears_the_earlier_results_instead_of_leaving_them_under_the_error(filled, browser):
    """Issue 19: a filter the API refuses (400) left the previous tables and charts on screen under the error."""
    browser.get(base(filled) + "/ui/dose")
    for table in ("ct-table", "effective-table", "outlier-table"):
        wait(browser, f"return document.getElementById('{table}').getAttribute('data-rows')")
    for canvas in ("ct-chart", "monthly-chart"):
        wait(browser, f"return document.getElementById('{canvas}').getAttribute('data-points')")
    assert len(browser.find_elements("css selector", "#ct-table tbody tr")) > 1
    for name, value in (("age_min", 50), ("age_max", 40)):  # min not below max: 400
        browser.find_element("css selector", f"#filters [name={name}]").send_keys(str(value))
    browser.find_element("css selector", "#filters button[type=submit]").click()
    wait(browser, "return !document.getElementById('filter-error').hidden")
    assert "age_min" in browser.find_element("id", "filter-error").text
    wait(browser, "return document.getElementById('effective-table').getAttribute('data-rows') === null")
    for table in ("ct-table", "ct-desc-table", "activity-table", "effective-table", "outlier-table"):
        assert attr(browser, table, "data-rows") is None, table
        cells = [td.text for td in browser.find_elements("css selector", f"#{table} td")]
        assert all(c.startswith("error") for c in cells) and len(cells) <= 1, (table, cells)
    for canvas in ("ct-chart", "ct-desc-chart", "monthly-chart", "activity-chart", "scatter-chart"):
        assert attr(browser, canvas, "data-points") is None, canvas
    assert browser.find_element("id", "outlier-count").text == "–"
    assert browser.find_elements("css selector", "#levels-table tbody tr")  # not filtered: kept
    browser.save_screenshot(str(ARTIFACTS / "dose-refused-filter.png"))
    assert all("status of 400" in e for e in errors(browser))  # the refused requests, nothing else


def test_the_monthly_chart_has_every_month_a_line_per_exam_type_and_a_titled_y_axis(filled, browser):
    browser.get(base(filled) + "/ui/dose")
    apply_filters(browser, "effective-table", station="CT-E2E")
    wait(browser, "return document.getElementById('monthly-chart').getAttribute('data-points') !== null")
    rows = api_rows(filled, "dose/ct-monthly", station="CT-E2E")["rows"]
    months = list(dict.fromkeys(r["month"] for r in rows))
    first, last = dt.date.fromisoformat(months[0] + "-01"), dt.date.fromisoformat(months[-1] + "-01")
    assert len(months) == (last.year - first.year) * 12 + last.month - first.month + 1  # no month dropped
    assert any(r["n"] == 0 and r["description"] is None for r in rows)  # the empty months are there
    groups = {r["description"] for r in rows if r["description"] is not None}
    assert groups == {"CT Head e2e", "CT Chest e2e", XSS}
    assert int(attr(browser, "monthly-chart", "data-points")) == sum(1 for r in rows if r["dlp_median"])
    assert attr(browser, "monthly-chart", "data-y-title") == "median DLP per study (mGy·cm)"
    assert attr(browser, "monthly-chart", "data-labels") == str(len(months))
    options = browser.find_elements("css selector", "#monthly-group option")
    assert len(options) == len(groups) + 1 and XSS in [o.text for o in options]
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "monthly-group")).select_by_visible_text("CT Head e2e")
    head = [r for r in rows if r["description"] == "CT Head e2e"]
    wait(
        browser,
        f"return document.getElementById('monthly-chart').getAttribute('data-points') === '{len(head)}'",
    )
    assert errors(browser) == []


def test_study_page_heading_both_dlp_totals_explained_and_labels_in_both_languages(filled, browser):
    """Issue 19: the study page showed DLP 1062.14 next to nothing of the scanner's 548.07, no accession number,
    description or date, and raw field names (ct_total_dlp_mgycm, pet_image)."""
    uid = f"{PREFIX}500"
    with contextlib.closing(connect(filled.cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
               accession_number, ct_event_count, ct_total_dlp_mgycm, ct_reported_total_dlp_mgycm)
               VALUES (%s, '2024-05-06', 2024, 'PET-CT split e2e', 'ACC-E2E-77', 2, 1062.14, 548.07)""",
            (uid,),
        )
        for n, dlp in enumerate((548.07, 514.07)):
            cur.execute(
                """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                   acquisition_protocol, acquisition_type, ctdivol_mgy, dlp_mgycm)
                   VALUES (%s, %s, %s, '2024-05-06', 2024, 'WB', 'Spiral Acquisition', 5, %s)""",
                (uid, f"#{n}", n, dlp),
            )
        cur.execute(
            """INSERT INTO dose.object (sop_instance_uid, study_instance_uid, modality, kind, status, file_sha256,
               parsed) VALUES (%s, %s, 'PT', 'pet_image', 'ok', 'x', '{}')""",
            (uid + ".1", uid),
        )
        conn.commit()
    try:
        browser.get(base(filled) + f"/ui/study/{uid}")
        wait(browser, "return document.getElementById('study-table').getAttribute('data-rows')")
        heading = browser.find_element("id", "study-heading").text
        assert heading == "PET-CT split e2e · Accession number ACC-E2E-77 · 2024-05-06"
        note = browser.find_element("id", "study-dlp-note")
        assert note.is_displayed() and "1062.14" in note.text and "548.07" in note.text
        assert "more than one dose report" in note.text
        fields = dict(
            (tr.find_elements("css selector", "td")[0].text, tr.find_elements("css selector", "td")[1].text)
            for tr in browser.find_elements("css selector", "#study-table tbody tr")
        )
        assert fields["Total DLP: sum of the irradiation events (mGy·cm)"] == "1062.14"
        assert fields["Total DLP reported by the scanner (mGy·cm)"] == "548.07"
        assert fields["Total effective dose, CT + NM (mSv)"].startswith("no total: NM part missing")
        kinds = [td.text for td in browser.find_elements("css selector", "#objects-table td")]
        assert "PET image header" in kinds and "pet_image" not in kinds
        events = [td.text for td in browser.find_elements("css selector", "#events-table td")]
        assert "spiral" in events
        for lang in ("en", "ko"):
            headers = [th.text for th in browser.find_elements("css selector", "main th")]
            labels = [
                td.text for td in browser.find_elements("css selector", "#study-table tbody td:first-child")
            ]
            assert not [x for x in headers + labels if "_" in x], (lang, headers, labels)
            if lang == "en":
                browser.find_element("id", "lang-toggle").click()
        assert "검사 번호" in browser.find_element("id", "study-heading").text
        assert "조사 이벤트의 합" in browser.find_element("id", "study-dlp-note").text
        browser.save_screenshot(str(ARTIFACTS / "study-split-ko.png"))
        browser.find_element("id", "lang-toggle").click()
        assert errors(browser) == []
    finally:
        with contextlib.closing(connect(filled.cfg)) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM dose.object WHERE study_instance_uid = %s", (uid,))
            cur.execute("DELETE FROM dose.study WHERE study_instance_uid = %s", (uid,))
            conn.commit()


def test_study_page_shows_ssde_the_net_activity_the_plausibility_warning_and_agent_names_in_both_languages(
    filled, browser
):
    """Issue 16 items 5 and 6: SSDE beside CTDIvol with the size it used, the net activity, the rule that gave
    the activity, an implausible activity shown as a warning, and the agent as people write it (¹⁸F-FDG)."""
    uid = f"{PREFIX}600"
    warning = "2000 MBq of Fluorodeoxyglucose F^18^ is outside 20-1500 MBq plausible for FDG"
    with contextlib.closing(connect(filled.cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
               ct_event_count, ct_total_dlp_mgycm, nm_total_activity_mbq, warnings)
               VALUES (%s, '2024-06-07', 2024, 'PET-CT SSDE e2e', 1, 300, 2000, %s)""",
            (uid, json.dumps([f"plausibility: {warning}"])),
        )
        cur.execute(
            """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
               acquisition_protocol, acquisition_type, ctdivol_mgy, dlp_mgycm, ssde_mgy, ssde_method,
               ssde_method_code, ssde_size_mm, ssde_size_kind, water_equivalent_diameter_mm)
               VALUES (%s, '#0', 0, '2024-06-07', 2024, 'WB low dose', 'Spiral Acquisition', 3.1, 300, 4.37,
                       'Estimated from Water Equivalent Diameter', 'DCM:113988', 243, 'water_equivalent_diameter',
                       243)""",
            (uid,),
        )
        cur.execute(
            """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal, study_date,
               study_year, source, agent, radionuclide, activity_mbq, net_activity_mbq, start_datetime,
               pre_measured_datetime, post_measured_datetime, administered_activity_rule, start_datetime_source,
               plausibility, details)
               VALUES (%s, '#0', 0, '2024-06-07', 2024, 'rrdsr', 'Fluorodeoxyglucose F^18^', '^18^Fluorine', 2000,
                       1987.5, '2024-06-07 10:00', '2024-06-07 09:50', '2024-06-07 10:20', 'rrdsr_administered',
                       'rrdsr', %s, %s)""",
            (uid, warning, json.dumps({"net_activity_note": "net activity 1987.5 MBq: pre ... post ..."})),
        )
        conn.commit()
    try:
        browser.set_window_size(1600, 1800)
        browser.get(base(filled) + f"/ui/study/{uid}")
        wait(browser, "return document.getElementById('admin-table').getAttribute('data-rows')")

        def column(table_id: str, header: str) -> str:
            headers = [th.text for th in browser.find_elements("css selector", f"#{table_id} th")]
            cells = browser.find_elements("css selector", f"#{table_id} tbody tr:first-child td")
            return cells[headers.index(header)].text

        assert column("events-table", "CTDIvol (mGy)") == "3.10"
        assert column("events-table", "SSDE (mGy)") == "4.37"
        assert column("events-table", "Patient size for SSDE (mm)") == "243 (water-equivalent diameter)"
        assert column("admin-table", "Radiopharmaceutical") == "¹⁸F-FDG"
        assert column("admin-table", "Radionuclide") == "¹⁸F"
        assert column("admin-table", "Net activity (MBq)") == "1987.50"
        assert column("admin-table", "Activity used") == "administered activity of the dose report (RRDSR)"
        shown = browser.find_element("css selector", "#admin-table [data-warning=plausibility]")
        assert shown.is_displayed() and shown.text == "⚠ Implausible activity"
        assert shown.value_of_css_property("color") in ("rgba(183, 28, 28, 1)", "rgb(183, 28, 28)")
        assert warning in column("admin-table", "Plausibility")
        record = browser.find_element("css selector", "#study-table .warning")
        assert record.is_displayed() and warning in record.text
        agent_cell = browser.find_element(
            "css selector", "#admin-table tbody tr:first-child td:nth-child(2) span"
        )
        assert agent_cell.get_attribute("title") == "Fluorodeoxyglucose F^18^"  # DICOM's text one hover away
        browser.save_screenshot(str(ARTIFACTS / "study-ssde-warning-en.png"))
        browser.find_element("id", "lang-toggle").click()
        assert column("events-table", "SSDE 환자 크기 (mm)") == "243 (물 등가 직경)"
        assert column("admin-table", "방사성의약품") == "¹⁸F-FDG"
        assert column("admin-table", "순 투여 방사능 (MBq)") == "1987.50"
        assert column("admin-table", "사용한 방사능") == "선량 보고서(RRDSR)의 투여 방사능"
        assert browser.find_element("css selector", "#admin-table [data-warning=plausibility]").text == (
            "⚠ 비정상 투여 방사능"
        )
        browser.save_screenshot(str(ARTIFACTS / "study-ssde-warning-ko.png"))
        browser.find_element("id", "lang-toggle").click()
        assert errors(browser) == []
    finally:
        with contextlib.closing(connect(filled.cfg)) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM dose.study WHERE study_instance_uid = %s", (uid,))
            conn.commit()


def test_dose_page_shows_agents_as_people_write_them_ssde_and_the_plausibility_warnings(filled, browser):
    """Issue 16 items 5 and 6 on the dose page: the activity table says ¹⁸F-FDG and ⁹⁹ᵐTc-MDP and counts the
    implausible activities per agent, the filter typed as shown finds the rows, and the protocol table has the
    median SSDE beside CTDIvol."""
    uid = f"{PREFIX}601"
    with contextlib.closing(connect(filled.cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
               station_name, ct_event_count, ct_total_dlp_mgycm, nm_total_activity_mbq)
               VALUES (%s, '2024-06-08', 2024, 'PET-CT SSDE e2e', 'SSDE-E2E', 2, 400, 2000)""",
            (uid,),
        )
        for n, ssde in enumerate((4.0, 6.0)):
            cur.execute(
                """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                   acquisition_protocol, ctdivol_mgy, dlp_mgycm, ssde_mgy, ssde_size_mm, ssde_size_kind)
                   VALUES (%s, %s, %s, '2024-06-08', 2024, 'SSDE protocol e2e', 3, 200, %s, 240,
                           'effective_diameter')""",
                (uid, f"#{n}", n, ssde),
            )
        cur.execute(
            """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal, study_date,
               study_year, source, agent, activity_mbq, plausibility)
               VALUES (%s, '#0', 0, '2024-06-08', 2024, 'rrdsr', 'Fluorodeoxyglucose F^18^', 2000,
                       '2000 MBq of FDG is outside 20-1500 MBq plausible for FDG')""",
            (uid,),
        )
        conn.commit()
    try:
        browser.set_window_size(1600, 3000)
        browser.get(base(filled) + "/ui/dose")
        apply_filters(browser, "ct-table", station="SSDE-E2E")
        headers = [th.text for th in browser.find_elements("css selector", "#ct-table th")]
        cells = [td.text for td in browser.find_elements("css selector", "#ct-table tbody tr:first-child td")]
        assert headers.index("SSDE median (mGy)") == headers.index("CTDIvol p95") + 1
        assert cells[headers.index("SSDE median (mGy)")] == "5" and cells[headers.index("N with SSDE")] == "2"
        wait(browser, "return document.getElementById('activity-table').getAttribute('data-rows') === '1'")
        headers = [th.text for th in browser.find_elements("css selector", "#activity-table th")]
        cells = browser.find_elements("css selector", "#activity-table tbody tr:first-child td")
        assert cells[0].text == "¹⁸F-FDG"
        flagged = cells[headers.index("Implausible activity (warnings)")]
        assert flagged.text == "⚠ 1" and flagged.find_element("css selector", ".warning").is_displayed()

        apply_filters(browser, "activity-table", station="NM-E2E")
        agents = [
            td.text for td in browser.find_elements("css selector", "#activity-table tbody td:first-child")
        ]
        assert agents == ["¹⁸F-FDG", "⁹⁹ᵐTc-MDP"]
        headers = [th.text for th in browser.find_elements("css selector", "#ct-table th")]
        assert "SSDE median (mGy)" not in headers  # no event of the filtered set has an SSDE
        apply_filters(browser, "activity-table", station="NM-E2E", agent="⁹⁹ᵐTc-MDP")
        agents = [
            td.text for td in browser.find_elements("css selector", "#activity-table tbody td:first-child")
        ]
        assert agents == ["⁹⁹ᵐTc-MDP"]
        browser.find_element("id", "lang-toggle").click()
        assert browser.find_element(
            "css selector", "#activity-table th[data-i18n='col.plausibility_warnings']"
        ).text == ("비정상 투여 방사능 (경고)")
        browser.find_element("id", "lang-toggle").click()
        assert errors(browser) == []
    finally:
        with contextlib.closing(connect(filled.cfg)) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM dose.study WHERE study_instance_uid = %s", (uid,))
            conn.commit()


def test_text_filters_match_part_of_the_text_in_any_case_suggest_values_and_hint_when_nothing_matches(
    filled, browser
):
    """Issue 19: 'e2e HEAD' found nothing (exact, case-sensitive), no suggestions, no manufacturer or model field,
    and a filter that matched nothing showed a bare 'no data'."""
    browser.get(base(filled) + "/ui/dose")
    browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")
    browser.get(base(filled) + "/ui/dose")
    assert browser.find_elements("css selector", "#filters input[name=manufacturer]")
    assert browser.find_elements("css selector", "#filters input[name=model]")
    apply_filters(browser, marker="ct-table", protocol="e2e HEAD")
    rows = browser.find_elements("css selector", "#ct-table tbody tr")
    assert [r.find_elements("css selector", "td")[0].text for r in rows] == ["E2E head"]
    field = browser.find_element("css selector", "#filters input[name=protocol]")
    field.clear()
    field.click()  # focused: its suggestions are asked (the other filters applied; none here)
    wait(browser, "return document.getElementById('choices-protocol').getAttribute('data-options')")
    values = browser.execute_script(
        "return Array.from(document.querySelectorAll('#choices-protocol option')).map(o => o.value)"
    )
    assert {"E2E head", "E2E chest", XSS} <= set(values)
    browser.find_element("css selector", "#filters input[name=description]").click()
    wait(browser, "return document.getElementById('choices-description').getAttribute('data-options')")
    assert "CT Head e2e" in browser.execute_script(
        "return Array.from(document.querySelectorAll('#choices-description option')).map(o => o.value)"
    )
    apply_filters(browser, marker="ct-table", protocol="no such protocol e2e")
    cell = browser.find_element("css selector", "#ct-table tbody td")
    assert (
        cell.text
        == "no exam matches; filters match part of the text, any case (a standard name: the whole name)"
    )
    assert errors(browser) == []


# Texts that are the same in both languages: units, abbreviations, symbols and names.
SAME_IN_BOTH = {
    "nmdose", "#", "N", "CTDIvol (mGy)", "DLP (mGy·cm)", "kVp", "MBq/kg", "mSv/(mGy·cm)", "mSv/MBq", "Orthanc",
    "", "–", "…",
}  # fmt: skip


def _labels(browser) -> tuple[dict, list[str]]:
    """Every element with a data-i18n key (its key, placeholders and text) and every table header's text."""
    labelled = browser.execute_script(
        "return Array.from(document.querySelectorAll('[data-i18n]')).map(function (el, i) {"
        " return [i, el.getAttribute('data-i18n'), el.getAttribute('data-i18n-vars') || '', el.textContent]; })"
    )
    headers = browser.execute_script(
        "return Array.from(document.querySelectorAll('main th')).map(function (th) { return th.textContent; })"
    )
    return {(i, k, v): text for i, k, v, text in labelled}, headers


def test_korean_translates_every_label_and_table_header_of_the_dose_study_and_research_pages(filled, browser):
    """Issue 19: in Korean many table headers, chart labels, the study and research tables and the sex choices
    stayed English."""
    url = base(filled)
    pages = {
        "/ui/research": ("yearly-table", "new-table", "failed-table"),
        "/ui/dose": ("ct-table", "ct-desc-table", "activity-table", "effective-table", "outlier-table",
                     "levels-table", "dead-letter-table"),
        f"/ui/study/{OUTLIER}": ("study-table", "events-table", "objects-table"),
        f"/ui/study/{PREFIX}100": ("study-table", "admin-table"),
    }  # fmt: skip
    try:
        for path, tables in pages.items():
            browser.get(url + path)
            browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")
            browser.get(url + path)
            for table in tables:
                wait(browser, f"return document.getElementById('{table}').getAttribute('data-rows')")
            en, en_headers = _labels(browser)
            browser.find_element("id", "lang-toggle").click()
            ko, ko_headers = _labels(browser)
            assert browser.execute_script("return document.documentElement.lang") == "ko"
            english = {
                key: text
                for key, text in en.items()
                if ko.get(key) == text and text.strip() not in SAME_IN_BOTH
            }
            assert english == {}, path
            assert len(ko_headers) == len(en_headers) > 0, path
            untranslated = [
                e
                for e, k in zip(en_headers, ko_headers, strict=True)
                if e == k and e.strip() not in SAME_IN_BOTH
            ]
            assert untranslated == [], path
            sexes = browser.execute_script(
                "return Array.from(document.querySelectorAll('select[name=sex] option')).map(o => o.text)"
            )
            assert not sexes or sexes == ["전체", "남", "여", "기타"], sexes
            browser.save_screenshot(str(ARTIFACTS / f"ko-{path.strip('/').replace('/', '-')}.png"))
            browser.find_element("id", "lang-toggle").click()
        assert errors(browser) == []
    finally:
        browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")


def test_an_official_level_is_labelled_with_its_country_and_a_server_error_has_a_translated_prefix(
    filled, browser
):
    """Issue 19: UK and German levels were labelled '공식 진단참고수준' as if official in Korea; server errors stayed
    English without a Korean word."""
    browser.get(base(filled) + "/ui/dose")
    try:
        wait(browser, "return document.getElementById('levels-table').getAttribute('data-rows')")
        statuses = {td.text for td in browser.find_elements("css selector", "#levels-table td:nth-child(6)")}
        assert "UK official DRL" in statuses and "German official DRL" in statuses, statuses
        assert "official DRL" not in statuses
        browser.find_element("id", "lang-toggle").click()
        statuses = {td.text for td in browser.find_elements("css selector", "#levels-table td:nth-child(6)")}
        assert {"영국 공식 진단참고수준", "독일 공식 진단참고수준"} <= statuses, statuses
        assert "공식 진단참고수준" not in statuses
        for name, value in (("age_min", 50), ("age_max", 40)):  # min not below max: 400
            browser.find_element("css selector", f"#filters [name={name}]").send_keys(str(value))
        browser.find_element("css selector", "#filters button[type=submit]").click()
        wait(browser, "return !document.getElementById('filter-error').hidden")
        text = browser.find_element("id", "filter-error").text
        assert text.startswith("서버 오류: ") and "age_min" in text, text
    finally:
        browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")


def test_research_yearly_chart_shows_an_empty_year_as_a_gap(filled, browser):
    """Issue 19: the per-year chart dropped empty years (a category axis of the years found)."""
    uid = "1.2.826.0.1.9999.2019"
    with contextlib.closing(connect(filled.cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found, patient_id,
               is_target) VALUES (%s, 'simulationPACS', '2019-06-01', 'E2E gap', %s, 'GAP', false)""",
            (uid, ["CT"]),
        )
    try:
        browser.get(base(filled) + "/ui/research")
        wait(browser, "return document.getElementById('yearly-table').getAttribute('data-rows')")
        labels = browser.execute_script("return Chart.getChart('yearly-chart').data.labels")
        years = [int(y) for y in labels]
        assert years == list(range(2019, max(years) + 1)) and 2020 in years and 2021 in years
    finally:
        with contextlib.closing(connect(filled.cfg)) as conn, conn, conn.cursor() as cur:
            cur.execute("DELETE FROM rpacs.study WHERE study_uid = %s", (uid,))


def _printed_pages(browser) -> int:
    """Pages of the current page printed to A4 by Chromium (DevTools Page.printToPDF)."""
    import base64
    import re

    pdf = base64.b64decode(
        browser.execute_cdp_cmd("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69})["data"]
    )
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf))


def test_dose_page_fits_1366_px_and_prints_without_navigation_or_inputs(filled, browser):
    """Issue 19: at 1366 px the dose page was 1,490 px wide; printing gave the navigation and the form inputs."""
    try:
        browser.set_window_size(1366, 768)
        browser.get(base(filled) + "/ui/dose")
        wait(browser, "return document.getElementById('outlier-table').getAttribute('data-rows')")
        wait(browser, "return document.getElementById('ct-table').getAttribute('data-rows')")
        width = browser.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert width[0] <= width[1], width  # no horizontal scroll of the page
        browser.execute_script("window.__printNav = null; var m = window.matchMedia('print');")
        pages = _printed_pages(browser)
        print(f"dose page printed: {pages} A4 pages")
        assert 1 <= pages <= 12, pages
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        hidden = browser.execute_script(
            "return [document.querySelector('header'), document.querySelector('form#filters input'),"
            " document.querySelector('form#filters button')].map(function (e) {"
            " return getComputedStyle(e).display; })"
        )
        assert hidden == ["none", "none", "none"], hidden
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
        browser.set_window_size(1400, 1800)  # the default of tests/e2e/chromium.py
