"""The research page (/nmdose/ui/research) in a real headless Chromium against the research Orthanc of the test
stack (issue 19): the year x description grid with every year and its cells as the database counts them, a new
description accepted from the page (rpacs.description_rule with who, its studies targets), a modality correction's
reason as a sentence; switched to Korean, no English label is left."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid

import pytest

from nmdose.census import modalities as M
from nmdose.db import connect
from tests.e2e.chromium import ARTIFACTS, errors, start, wait, webdriver_module

pytestmark = pytest.mark.integration

webdriver_module()

ROWS = "return document.getElementById('yearly-table').getAttribute('data-rows')"
NEW_ROWS = "return document.getElementById('new-table').getAttribute('data-rows')"
SAME_IN_BOTH = {"", "–", "…", "nmdose", "Orthanc", "Orthanc Explorer"}


@pytest.fixture(scope="module")
def browser():
    driver = start()
    yield driver
    driver.quit()


@pytest.fixture
def filled(stack):
    """Studies of three new descriptions: a grid row with an empty year between two (target, states known), a
    description to accept, and one PET-CT corrected by the census's majority rule. Removed afterwards, with
    the acceptance and the configuration file as they were."""
    tag = uuid.uuid4().hex[:6]
    grid, accept, pet = f"E2E grid {tag}", f"E2E accept {tag}", f"E2E PET {tag}"
    prefix = f"1.2.826.0.1.4242.{int(tag, 16)}."
    yaml = stack.cfg.config_dir / "retrieve_options.yaml"
    yaml_before = yaml.read_text(encoding="utf-8")
    # grid: 2016 three studies (two retrieved, one failed), 2018 one pending; 2017 none
    rows = [(grid, 2016, ["CT"], True, "done"), (grid, 2016, ["CT"], True, "done"),
            (grid, 2016, ["CT"], True, "failed"), (grid, 2018, ["CT"], True, "pending"),
            (accept, 2018, ["NM"], False, None), (accept, 2018, ["NM"], False, None)]  # fmt: skip
    rows += [(pet, 2018, ["CT", "PT"], False, None)] * 3 + [(pet, 2018, ["CT"], False, None)]
    exps = M.expectations([(d, m) for d, _y, m, _t, _s in rows])
    with contextlib.closing(connect(stack.cfg)) as conn, conn, conn.cursor() as cur:
        # the grid's description is a target (accepting recomputes every study's target flag from these rules)
        cur.execute(
            "INSERT INTO rpacs.description_rule (description, is_target, source) VALUES (%s, true, 'accepted')",
            (grid,),
        )
        for i, (desc, year, mods, target, state) in enumerate(rows):
            corrected, reason = M.correction(mods, exps[desc])
            cur.execute(
                """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found,
                   modalities_corrected, correction_reason, patient_id, is_target)
                   VALUES (%s, 'simulationPACS', %s, %s, %s, %s, %s, %s, %s)""",
                (f"{prefix}{i}", dt.date(year, 3, 1 + i), desc, mods, corrected, reason, f"E2ER{i}", target),
            )
            if state:
                cur.execute(
                    "INSERT INTO rpacs.retrieval (study_instance_uid, source_node, state) VALUES (%s, 'simulationPACS', %s)",
                    (f"{prefix}{i}", state),
                )
    try:
        yield stack, grid, accept, pet
    finally:
        with contextlib.closing(connect(stack.cfg)) as conn, conn, conn.cursor() as cur:
            cur.execute("DELETE FROM rpacs.retrieval WHERE study_instance_uid LIKE %s", (prefix + "%",))
            cur.execute("DELETE FROM rpacs.study WHERE study_uid LIKE %s", (prefix + "%",))
            cur.execute(
                "DELETE FROM rpacs.description_rule WHERE description = ANY(%s)", ([grid, accept, pet],)
            )
        yaml.write_text(yaml_before, encoding="utf-8")


def _grid(browser) -> tuple[list[str], dict[str, list[list[str]]]]:
    """The grid's headers and, per description, its rows' cells (text, title)."""
    return browser.execute_script(
        """const t = document.getElementById('yearly-table');
           const heads = Array.from(t.querySelectorAll('thead th')).map(th => th.textContent);
           const rows = {};
           t.querySelectorAll('tbody tr').forEach(tr => {
             const cells = Array.from(tr.cells).map(td => [td.textContent, td.title]);
             rows[cells[0][0]] = cells; });
           return [heads, rows];"""
    )


def _labels(browser) -> dict[str, str]:
    """Every labelled element (index, key) and table header with its text."""
    return browser.execute_script(
        """const out = {};
           document.querySelectorAll('[data-i18n]').forEach((el, i) => {
             out[i + ' ' + el.getAttribute('data-i18n')] = el.textContent; });
           document.querySelectorAll('main th').forEach((th, i) => { out['th ' + i] = th.textContent; });
           return out;"""
    )


def test_the_grid_accepting_a_description_and_the_reasons_in_both_languages(filled, browser):
    stack, grid, accept, pet = filled
    url = stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/ui/research"
    browser.get(url)
    browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")
    browser.get(url)
    try:
        wait(browser, ROWS)
        heads, rows = _grid(browser)
        years = [int(h) for h in heads[2:] if h.isdigit()]
        assert years == list(range(years[0], years[-1] + 1)) and {2016, 2017, 2018} <= set(years)
        assert heads[:2] == ["Description", "Modalities"] and heads[-1] == "Total"
        cells = dict(zip(heads, rows[grid], strict=True))
        assert cells["2016"] == ["2/3", "3 studies: 2 retrieved, 0 pending, 1 failed, 0 not targets"]
        assert cells["2017"] == ["", ""]  # the empty year is a column, its cell empty
        assert cells["2018"][0] == "0/1" and cells["Total"][0] == "2/4"
        assert rows[accept][heads.index("2018")][0] == "2"  # not targets: the studies alone
        assert "Total" in rows  # the total row
        # a click on a year's header sorts by it: the grid row (3 studies in 2016) first
        browser.execute_script(
            "Array.from(document.querySelectorAll('#yearly-table th')).find(th => th.textContent === '2016').click()"
        )
        first = browser.execute_script(
            "return document.querySelector('#yearly-table tbody tr td').textContent"
        )
        assert first == grid
        # the reason as a sentence
        reason = wait(
            browser,
            f"""const tr = Array.from(document.querySelectorAll('#corrections-table tbody tr'))
                  .find(tr => tr.cells[0].textContent === {pet!r}); return tr && tr.cells[3].textContent""",
        )
        assert reason == (
            "The PACS lists CT for this study, but most studies with this description (3 of 4) have CT + PT: "
            "counted as CT + PT."
        )
        # accept from the page
        wait(browser, NEW_ROWS)
        browser.execute_script(
            f"Array.from(document.querySelectorAll('#new-table .accept-box')).find(b => b.value === {accept!r}).click()"
        )
        browser.find_element("id", "accept-button").click()
        done = wait(browser, "return document.getElementById('accept-result').textContent")
        assert done.startswith("Accepted 1 description(s) by dev; 2 studies"), done
        wait(
            browser,
            f"""return !Array.from(document.querySelectorAll('#new-table .accept-box'))
                  .some(b => b.value === {accept!r})""",
        )
        with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT source, added_by FROM rpacs.description_rule WHERE description = %s", (accept,)
            )
            assert cur.fetchall() == [("accepted", "dev")]
            cur.execute("SELECT count(*) FROM rpacs.study WHERE is_target AND description = %s", (accept,))
            assert cur.fetchone()[0] == 2
        wait(browser, f"""const tr = Array.from(document.querySelectorAll('#yearly-table tbody tr'))
                          .find(tr => tr.cells[0].textContent === {accept!r});
                          return tr && tr.cells[tr.cells.length - 1].textContent === '0/2'""")  # fmt: skip
        browser.save_screenshot(str(ARTIFACTS / "research-grid-en.png"))
        en = _labels(browser)
        browser.find_element("id", "lang-toggle").click()
        ko = _labels(browser)
        assert browser.execute_script("return document.documentElement.lang") == "ko"
        english = {k: v for k, v in en.items() if ko.get(k) == v and v.strip() not in SAME_IN_BOTH}
        assert english == {}
        _heads, rows = _grid(browser)
        assert "합계" in rows and rows[grid][heads.index("2016")][1].startswith("검사 3건")
        reason = browser.execute_script(
            f"""return Array.from(document.querySelectorAll('#corrections-table tbody tr'))
                  .find(tr => tr.cells[0].textContent === {pet!r}).cells[3].textContent"""
        )
        assert reason.startswith("PACS에는 이 검사의 모달리티가 CT") and "4건 중 3건" in reason
        assert browser.find_element("id", "accept-result").text.startswith(
            "dev 님이 검사명 1개를 승인했습니다"
        )
        browser.save_screenshot(str(ARTIFACTS / "research-grid-ko.png"))
        assert errors(browser) == []
    finally:
        browser.execute_script("localStorage.setItem('nmdose.lang', 'en')")
