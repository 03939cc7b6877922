"""The dose page's standard-name filter in a real headless Chromium (docs/standard_names.md "Filtering by standard
name"): its suggestions are the standard names in use, choosing one narrows the tables to the rows with that name,
and its label is English and Korean. The report page has the same field."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import urllib.request
import uuid

import pytest

from nmdose.db import connect
from tests.e2e.chromium import errors, start, wait, webdriver_module

pytestmark = pytest.mark.integration

webdriver_module()


@pytest.fixture(scope="module")
def browser():
    driver = start()
    yield driver
    driver.quit()


@pytest.fixture()
def named(stack):
    """Three CT studies of a tag of their own (two chest, one head), named by two rules imported through the API;
    removed with their rules afterwards."""
    from nmdose.dose import standard_names as sn

    tag = "SNF" + uuid.uuid4().hex[:6].upper()
    serial = uuid.uuid4().int % 10**12
    rows = [
        (f"{tag} chest", f"{tag} chest one"),
        (f"{tag} chest", f"{tag} chest two"),
        (f"{tag} head", f"{tag} head"),
    ]
    studies = {
        f"1.2.826.0.1.999.89.{serial}.{i}": row for i, row in enumerate(rows)
    }  # uid -> (description, protocol)
    with contextlib.closing(connect(stack.cfg)) as conn, conn, conn.cursor() as cur:
        for i, (uid, (desc, protocol)) in enumerate(studies.items()):
            date = dt.date(2024, 3, 1 + i)
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                       ct_event_count, ct_total_dlp_mgycm) VALUES (%s, %s, %s, %s, 1, %s)""",
                (uid, date, date.year, desc, 100.0 + i),
            )
            cur.execute(
                """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                       study_description, acquisition_protocol, ctdivol_mgy, dlp_mgycm)
                   VALUES (%s, '#0', 0, %s, %s, %s, %s, %s, %s)""",
                (uid, date, date.year, desc, protocol, 5.0 + i, 100.0 + i),
            )
    rules = (
        f"standard_names:\n  - standard_name: Chest {tag}\n    field: study_description\n"
        f"    raw_values: ['{tag} chest']\n  - standard_name: Head {tag}\n    field: study_description\n"
        f"    raw_values: ['{tag} head']\n"
    )
    base = stack.cfg.research_node.http_url.rstrip("/") + "/nmdose"
    request = urllib.request.Request(
        base + "/api/names/import",
        data=json.dumps({"format": "yaml", "text": rules}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as r:
        assert json.loads(r.read())["applied"]["studies"] == 3
    try:
        yield tag, base
    finally:
        with contextlib.closing(connect(stack.cfg)) as conn, conn, conn.cursor() as cur:
            cur.execute("DELETE FROM dose.standard_name_rule WHERE standard_name LIKE %s", (f"%{tag}",))
            cur.execute("DELETE FROM dose.study WHERE study_instance_uid = ANY(%s)", (list(studies),))
            sn.apply(cur)


def first_cells(browser, table: str) -> list[str]:
    return browser.execute_script(
        f"return Array.from(document.querySelectorAll('#{table} tbody tr'))"
        ".map(tr => tr.querySelector('td').textContent)"
    )


def choose(browser, name: str) -> None:
    """Type `name` into the standard-name field and apply the filters; wait for the filtered tables."""
    field = browser.find_element("id", "standard-name-filter")
    field.clear()
    field.send_keys(name)
    browser.execute_script(
        "['ct-table', 'ct-desc-table'].forEach(function (id) {"
        " document.getElementById(id).removeAttribute('data-rows'); });"
    )
    browser.find_element("css selector", "#filters button[type=submit]").click()
    wait(
        browser,
        "return ['ct-table', 'ct-desc-table'].every(id => "
        "document.getElementById(id).getAttribute('data-rows') !== null)",
    )


def test_choosing_a_standard_name_narrows_the_dose_page_in_english_and_korean(named, browser):
    tag, base = named
    browser.get(base + "/ui/dose")
    browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")
    browser.get(base + "/ui/dose")
    wait(browser, "return document.getElementById('ct-table').getAttribute('data-rows') !== null")
    unfiltered = first_cells(browser, "ct-table")
    assert {f"{tag} chest one", f"{tag} chest two", f"{tag} head"} <= set(unfiltered)
    label = browser.find_element("css selector", "span[data-i18n='f.standard_name']")
    assert label.text == "Standard name"

    # the suggestions: the standard names in use, asked when the field is first focused
    browser.find_element("id", "standard-name-filter").click()
    wait(browser, "return document.getElementById('standard-names').getAttribute('data-options')")
    options = browser.execute_script(
        "return Array.from(document.querySelectorAll('#standard-names option')).map(o => o.value)"
    )
    assert {f"Chest {tag}", f"Head {tag}"} <= set(options)

    choose(browser, f"Chest {tag}")
    assert sorted(first_cells(browser, "ct-table")) == [f"{tag} chest one", f"{tag} chest two"]
    assert first_cells(browser, "ct-desc-table") == [f"{tag} chest"]
    # any case; the whole name (a part of it names nothing)
    choose(browser, f"head {tag.lower()}")
    assert first_cells(browser, "ct-table") == [f"{tag} head"]
    choose(browser, tag)
    assert first_cells(browser, "ct-table") == [
        "no exam matches; filters match part of the text, any case (a standard name: the whole name)"
    ]

    browser.find_element("id", "lang-toggle").click()
    assert label.text == "표준 검사명"
    assert (
        browser.find_element("id", "standard-name-filter")
        .get_attribute("title")
        .startswith("표준 검사명 전체")
    )
    browser.find_element("id", "lang-toggle").click()
    assert label.text == "Standard name"
    assert errors(browser) == []


def test_the_report_page_filters_by_standard_name_in_english_and_korean(named, browser):
    tag, base = named
    browser.get(base + "/ui/report")
    browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")
    browser.get(base + "/ui/report")
    label = browser.find_element("css selector", "span[data-i18n='rp.f.standard_name']")
    assert label.text == "Standard name"
    field = browser.find_element("id", "rp-standard-name")
    field.click()
    wait(browser, "return document.querySelectorAll('#rp-standard-names option').length > 0")
    options = browser.execute_script(
        "return Array.from(document.querySelectorAll('#rp-standard-names option')).map(o => o.value)"
    )
    assert f"Chest {tag}" in options
    browser.find_element("id", "lang-toggle").click()
    assert label.text == "표준 검사명"
    browser.find_element("id", "lang-toggle").click()
    assert errors(browser) == []
