"""The report page (issue 19): a shell with its own script, every label in English and Korean, no HTML from data,
and the pure parts of its SQL module (periods of the time axis, age bands)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from types import SimpleNamespace

import pytest

from nmdose.web import pages, sql_reports
from nmdose.web.router import Request, Router
from nmdose.web.routes_pages import STATIC_DIR


def _dictionaries(js: str) -> tuple[dict[str, str], dict[str, str]]:
    en, ko = (
        dict(re.findall(r'"([\w.]+)": ((?:"[^"]*"\s*\+?\s*)+)', block))
        for block in re.search(r"en: \{(.*?)\n    \},\s*ko: \{(.*?)\n    \}", js, re.S).groups()
    )
    return en, ko


def test_the_report_page_is_a_shell_with_its_script_and_every_label_in_both_languages():
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=None))
    resp = router.dispatch(Request("GET", "/ui/report"))
    text = resp.body.decode()
    assert resp.status == 200 and resp.content_type == "text/html; charset=utf-8"
    assert re.findall(r"<script[^>]*>", text)[-2:] == [
        '<script src="../static/nmdose.js">',
        '<script src="../static/report.js">',
    ]
    assert 'data-page="report"' in text and re.search(r"<[^>]*\son\w+=", text) is None
    js = (STATIC_DIR / "report.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js
    assert 'n.register("report", I18N, run)' in js
    en, ko = _dictionaries(js)
    assert set(en) == set(ko) and len(en) > 80
    body = text[text.index("<main>") :]
    used = set(re.findall(r'data-i18n="([\w.]+)"', body))
    code = js[js.index("var KINDS") :]
    used |= set(re.findall(r'"((?:rp|col)\.[\w.+]*\w)"', code))  # the labels the script sets (not prefixes)
    used |= {f"rp.wd.{d}" for d in range(1, 8)} | {
        f"rp.status.{s}" for s in ("official", "proposed", "example")
    }
    used |= {f"rp.m.{m}" for m in sql_reports.MEASURES}
    used.add("nav.report")  # the shell's navigation link
    assert used - set(en) == set() and used - set(ko) == set()
    # a Korean label is Korean: the same text as the English one only for units, abbreviations and names
    same = {k for k in en if en[k] == ko[k]}
    assert same <= {"rp.m.ctdivol", "rp.m.dlp", "rp.csv", "rp.xlsx"}, same
    printed = router.dispatch(Request("GET", "/ui/report/print", query={"year": "2024"}))
    assert printed.status == 200 and 'src="../../static/report.js"' in printed.body.decode()


def test_every_report_route_has_a_row_in_the_permission_table():
    doc = (STATIC_DIR.parents[3] / "docs" / "web.md").read_text()
    for path in ("levels", "trends", "histogram", "workload", "annual"):
        assert f"| GET | /nmdose/api/dose/report/{path} | dose:read; csv/xlsx: dose:export |" in doc
    assert "| GET | /nmdose/ui/report | public |" in doc
    assert "| GET | /nmdose/ui/report/print | public |" in doc


def test_period_axis_is_continuous_and_labelled():
    starts = sql_reports.period_starts(dt.date(2023, 11, 1), dt.date(2024, 2, 1), "month")
    assert [sql_reports.period_label(s, "month") for s in starts] == [
        "2023-11",
        "2023-12",
        "2024-01",
        "2024-02",
    ]
    starts = sql_reports.period_starts(dt.date(2023, 10, 1), dt.date(2024, 4, 1), "quarter")
    assert [sql_reports.period_label(s, "quarter") for s in starts] == ["2023-Q4", "2024-Q1", "2024-Q2"]
    assert sql_reports.period_starts(dt.date(2022, 1, 1), dt.date(2024, 1, 1), "year")[-1] == dt.date(
        2024, 1, 1
    )


def test_age_bands_are_the_european_paediatric_bands():
    case = sql_reports.age_band_sql("age")
    assert case.startswith("CASE WHEN age IS NULL THEN 'unknown' WHEN age < 1 THEN '0-1'")
    assert "WHEN age < 18 THEN '15-18' ELSE 'adult' END" in case


def test_a_group_that_does_not_fit_the_measure_is_refused():
    assert sql_reports.groups_of("activity") == ("agent", "description", "standard_name", "age_band")
    with pytest.raises(ValueError, match="not one of"):
        sql_reports.records({}, "activity", "protocol")


def test_the_report_sql_puts_every_value_in_a_bound_parameter():
    """Every filter an SQL injection attempt: none reaches the SQL text, one parameter per %s (no database:
    web/test_web_layer.py's recording connection)."""
    from tests.unit.web.test_web_layer import FakeConnection, nasty_filters

    f = nasty_filters()
    levels = [
        SimpleNamespace(
            name="x'); DROP", modality="CT", quantity="ctdivol_mgy", per="event", value=1.0, status="official",
            source="s", year=2024, age_band=None,
            match=SimpleNamespace(protocols=["a"], descriptions=None, target_regions=None, agents=None),
        )
    ]  # fmt: skip
    calls = [("workload", lambda c: sql_reports.workload(c, f))]
    for measure in sql_reports.MEASURES:
        for group in sql_reports.groups_of(measure):
            calls += [
                (f"levels {measure} {group}", lambda c, m=measure, g=group: sql_reports.level_comparison(
                    c, f, levels, m, g)),
                (f"trends {measure} {group}", lambda c, m=measure, g=group: sql_reports.trends(
                    c, f, m, g, "quarter", 5)),
                (f"histogram {measure} {group}", lambda c, m=measure, g=group: sql_reports.histogram(
                    c, f, m, g, 20, 4)),
            ]  # fmt: skip
    for name, call in calls:
        conn = FakeConnection()
        with contextlib.suppress(KeyError, TypeError):  # the fake's one row lacks a column read afterwards
            call(conn)
        statements = [(q, p) for q, p in conn.executed if not q.startswith("SET LOCAL")]
        assert statements, name
        for query, params in statements:
            for value in f.values():
                if isinstance(value, str) and len(value) > 1:
                    assert value not in query, f"{name}: {value!r} is in the SQL text"
            assert "DROP" not in query, name
            assert len(re.findall(r"%s", query.replace("%%", ""))) == len(params), name
