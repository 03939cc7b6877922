"""Issue 19: on the dose page's box charts, groups an order of magnitude apart (low-dose CT of PET-CT at ~3 mGy
beside diagnostic CT at ~15 mGy; ¹²³I at ~17 MBq beside ⁹⁹ᵐTc at ~750 MBq) are drawn on two panels with axes of
their own, titled in English and Korean; groups closer together stay on one chart."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest

from nmdose.db import connect
from tests.e2e.chromium import ARTIFACTS, errors, start, wait, webdriver_module
from tests.e2e.test_pages_browser import apply_filters, attr, base

pytestmark = pytest.mark.integration

webdriver_module()

PREFIX = "1.2.826.0.1.997."
LOW, HIGH = "AXES AC e2e", "AXES diag e2e"
I123, TC99M = "Iodine I^123^ ioflupane", "Technetium Tc^99m^ medronate"


@pytest.fixture(scope="module")
def axes(stack):
    """Station AXES-E2E: 5 low-dose CT studies (2.4-2.8 mGy) and 5 diagnostic ones (14-18 mGy); station AXES-ONE:
    two protocols at 10 and 15 mGy; station AXES-NM: 3 ¹²³I administrations (15-19 MBq) and 3 ⁹⁹ᵐTc (700-800)."""
    with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        ct = [("AXES-E2E", LOW, "PET-CT AXES e2e", 2.4 + 0.1 * k, 25.0 + k) for k in range(5)]
        ct += [("AXES-E2E", HIGH, "CT Abdomen AXES e2e", 14.0 + k, 500.0 + 10 * k) for k in range(5)]
        ct += [("AXES-ONE", f"AXES one {m} e2e", f"CT one {m} e2e", m + 0.1 * k, 300.0) for m in (10, 15)
               for k in range(3)]  # fmt: skip
        for i, (station, protocol, desc, ctdi, dlp) in enumerate(ct):
            uid, date = f"{PREFIX}{i}", dt.date(2024, 1 + i % 12, 5)
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                   station_name, patient_age_years, patient_weight_kg, ct_event_count, ct_total_dlp_mgycm)
                   VALUES (%s, %s, %s, %s, %s, 50, 70, 1, %s)""",
                (uid, date, date.year, desc, station, dlp),
            )
            cur.execute(
                """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                   acquisition_protocol, ctdivol_mgy, dlp_mgycm) VALUES (%s, '#0', 0, %s, %s, %s, %s, %s)""",
                (uid, date, date.year, protocol, ctdi, dlp),
            )
        nm = [(I123, 15.0 + 2 * k) for k in range(3)] + [(TC99M, 700.0 + 50 * k) for k in range(3)]
        for i, (agent, mbq) in enumerate(nm, start=100):
            uid, date = f"{PREFIX}{i}", dt.date(2024, 1 + i % 12, 6)
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                   station_name, patient_age_years, patient_weight_kg, nm_total_activity_mbq)
                   VALUES (%s, %s, %s, 'NM AXES e2e', 'AXES-NM', 50, 70, %s)""",
                (uid, date, date.year, mbq),
            )
            cur.execute(
                """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal,
                   study_date, study_year, source, agent, activity_mbq, activity_per_kg_mbq)
                   VALUES (%s, '#0', 0, %s, %s, 'rrdsr', %s, %s, %s)""",
                (uid, date, date.year, agent, mbq, mbq / 70),
            )
        conn.commit()
    yield stack
    with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dose.study WHERE study_instance_uid LIKE %s", (PREFIX + "%",))
        conn.commit()


@pytest.fixture(scope="module")
def browser():
    driver = start()
    driver.set_window_size(1400, 5200)
    yield driver
    driver.quit()


def groups(browser, canvas: str) -> list:
    return json.loads(attr(browser, canvas, "data-groups") or "null")


def scale(browser, canvas: str, what: str):
    """The drawn chart's left-axis top, its title and its left-axis title (Chart.js's own objects)."""
    return browser.execute_script(
        "var c = Chart.getChart(document.getElementById(arguments[0]));"
        " return {max: c.scales.y.max, title: c.options.plugins.title.text,"
        " axis: c.options.scales.y.title.text}[arguments[1]];",
        canvas,
        what,
    )


def wait_groups(browser, canvas: str, expected: list) -> None:
    """Until `canvas` exists, is shown and holds exactly the groups `expected`."""
    want = json.dumps(json.dumps(expected))
    wait(browser, f"var el = document.getElementById('{canvas}');"
         f" return el && !el.parentNode.hidden && el.getAttribute('data-groups') === {want};")  # fmt: skip


def test_low_dose_ct_and_low_activities_get_their_own_panel_and_axis_in_english_and_korean(axes, browser):
    browser.get(base(axes) + "/ui/dose")
    apply_filters(browser, "ct-table", station="AXES-E2E")
    wait_groups(browser, "ct-chart", [HIGH])
    wait_groups(browser, "ct-chart-low", [LOW])
    assert attr(browser, "ct-chart", "data-panel") == "high"
    assert attr(browser, "ct-chart-low", "data-panel") == "low"
    assert int(attr(browser, "ct-chart", "data-points")) == 2  # CTDIvol and DLP of the diagnostic protocol
    assert int(attr(browser, "ct-chart-low", "data-points")) == 2
    high_max, low_max = scale(browser, "ct-chart", "max"), scale(browser, "ct-chart-low", "max")
    assert low_max < 5 <= 14 < high_max  # ~3 mGy on its own axis: its boxes fill the panel
    assert float(attr(browser, "ct-chart-low", "data-y-max")) == low_max
    assert scale(browser, "ct-chart", "title") == "Diagnostic-dose CT"
    assert scale(browser, "ct-chart-low", "title").startswith("Low-dose CT")
    assert scale(browser, "ct-chart-low", "axis") == "mGy · low-dose"
    # per study description (mean CTDIvol per study): the PET-CT description on the low panel
    wait_groups(browser, "ct-desc-chart", ["CT Abdomen AXES e2e"])
    wait_groups(browser, "ct-desc-chart-low", ["PET-CT AXES e2e"])

    browser.find_element("id", "lang-toggle").click()
    assert scale(browser, "ct-chart", "title") == "진단 선량 CT"
    assert scale(browser, "ct-chart-low", "title").startswith("저선량 CT")
    assert scale(browser, "ct-chart-low", "axis") == "mGy · 저선량"
    assert scale(browser, "ct-chart", "axis") == "mGy · 진단 선량"
    browser.find_element("id", "ct-chart-low").screenshot(str(ARTIFACTS / "dose-ct-low-panel-ko.png"))
    browser.find_element("id", "lang-toggle").click()
    assert scale(browser, "ct-chart-low", "title").startswith("Low-dose CT")

    # ¹²³I (~17 MBq) and ⁹⁹ᵐTc (~750 MBq): two panels of activity too
    apply_filters(browser, "activity-table", station="AXES-NM")
    wait(browser, "var el = document.getElementById('activity-chart-low');"
         " return el && !el.parentNode.hidden && el.getAttribute('data-points') === '2';")  # fmt: skip
    assert len(groups(browser, "activity-chart")) == len(groups(browser, "activity-chart-low")) == 1
    assert groups(browser, "activity-chart-low") == ["¹²³I-ioflupane"]
    assert scale(browser, "activity-chart-low", "max") < 50 < 700 < scale(browser, "activity-chart", "max")
    assert scale(browser, "activity-chart-low", "title") == "Lower activities: own axis"
    browser.find_element("id", "lang-toggle").click()
    assert scale(browser, "activity-chart-low", "title") == "낮은 투여 방사능: 별도 축"
    assert scale(browser, "activity-chart", "axis") == "MBq · 높음"
    browser.find_element("id", "lang-toggle").click()
    assert errors(browser) == []


def test_groups_closer_than_four_times_stay_on_one_chart(axes, browser):
    browser.get(base(axes) + "/ui/dose")
    apply_filters(browser, "ct-table", station="AXES-E2E")
    wait_groups(browser, "ct-chart-low", [LOW])
    apply_filters(browser, "ct-table", station="AXES-ONE")  # the second panel of the earlier answer goes away
    wait(browser, "return document.getElementById('ct-chart').getAttribute('data-points') === '4'")
    assert groups(browser, "ct-chart") == ["AXES one 10 e2e", "AXES one 15 e2e"]
    assert attr(browser, "ct-chart", "data-panel") is None
    low = browser.execute_script("var el = document.getElementById('ct-chart-low');"
                                 " return [el.parentNode.hidden, el.getAttribute('data-points')];")  # fmt: skip
    assert low == [True, None]
    assert scale(browser, "ct-chart", "axis") == "mGy"
    assert errors(browser) == []
