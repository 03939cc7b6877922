"""The report page's opening requests (static/report.js) in a real headless Chromium are exactly what the dose
worker's warm step computes after new data (web/report_views.py `opening_views`, run by
web/dose_views.py `warm_default_views`): opened after the warm-up, the page finds every answer in the cache and
computes none."""

from __future__ import annotations

import contextlib
import datetime as dt
import urllib.parse

import pytest

from nmdose.db import connect
from tests.e2e.chromium import errors, start, wait, webdriver_module

pytestmark = pytest.mark.integration

PREFIX = "1.2.826.0.1.997."
webdriver_module()


@pytest.fixture(scope="module")
def filled(stack):
    """Six CT studies of last year and the year before (a new version of the dose data)."""
    with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        for i in range(6):
            date = dt.date(dt.date.today().year - 1 - i % 2, 1 + i, 10)
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                       station_name, patient_weight_kg, ct_event_count, ct_total_dlp_mgycm, ct_mean_ctdivol_mgy)
                   VALUES (%s, %s, %s, 'CT warm-e2e', 'CT-W', 70, 1, %s, %s)""",
                (f"{PREFIX}{i}", date, date.year, 400.0 + i, 20.0 + i),
            )
            cur.execute(
                """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                       acquisition_protocol, ctdivol_mgy, dlp_mgycm)
                   VALUES (%s, '#0', 0, %s, %s, 'Abdomen warm-e2e', %s, %s)""",
                (f"{PREFIX}{i}", date, date.year, 20.0 + i, 400.0 + i),
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


def _cached(stack) -> set[tuple]:
    """The answers in the web cache for the current dose data, with when each was computed."""
    with contextlib.closing(connect(stack.cfg, role="web")) as conn, conn.cursor() as cur:
        cur.execute("SELECT key, computed_at FROM dose.web_cache WHERE data_version = dose.data_version()")
        return set(cur.fetchall())


def test_the_report_page_opens_with_the_warmed_answers(filled, browser):
    from nmdose.web import report_views
    from nmdose.web.dose_views import warm_default_views
    from nmdose.web.report_views import opening_views, report_key

    report_views._last_warm.clear()  # due now, whatever an earlier test of this process warmed (at most every 15 min)
    with contextlib.closing(connect(filled.cfg, role="web")) as conn:
        warm_default_views(conn, filled.cfg)
    warm = _cached(filled)
    assert {report_key(filled.cfg, route, f) for route, f in opening_views()} <= {k for k, _ in warm}
    url = filled.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/report"
    browser.get(url)
    for table in (
        "rp-levels-table",
        "rp-trend-table",
        "rp-workload-table",
        "rp-annual-levels",
        "rp-size-table",
    ):
        wait(browser, f"return document.getElementById('{table}').getAttribute('data-rows')")
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })"
    )
    asked = sorted(
        (u.path.removeprefix("/nmdose"), sorted(urllib.parse.parse_qsl(u.query)))
        for u in map(urllib.parse.urlsplit, urls)
        if u.path.startswith("/nmdose/api/dose/report/")
    )
    assert asked == sorted(
        ("/api/dose/report/" + route.replace("_", "-"), sorted((k, str(v)) for k, v in f.items()))
        for route, f in opening_views()
    )
    assert _cached(filled) == warm  # every opening answer was found: none computed, none stored
    assert errors(browser) == []
