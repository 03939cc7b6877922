"""Issue 19 (exports): the file name carries the filters, the XLSX states its time in the site's time zone."""

from __future__ import annotations

import datetime as dt
import io

import openpyxl

from nmdose.web import xlsx
from nmdose.web.export import answer, export_filename
from nmdose.web.xlsx import site_now


def test_the_file_name_carries_the_filters_sanitised():
    f = {"from": dt.date(2024, 1, 1), "to": dt.date(2024, 12, 31), "description": "Chest", "format": "csv"}
    assert export_filename("ct-events", f) == "ct-events_2024-01-01_2024-12-31_chest"
    assert export_filename("ct-events", {}) == "ct-events"
    assert export_filename("ct-events", {"to": dt.date(2024, 6, 30)}) == "ct-events_to-2024-06-30"
    name = export_filename(
        "activity-weight",
        {"agent": "¹⁸F-FDG", "station": '../CT 1"; rm', "sex": "F", "age_min": 18.0, "protocol": "흉부"},
    )
    assert name == "activity-weight_x_ct-1-rm_18f-fdg_sex-f_age_min-18.0"  # protocol "흉부": nothing ASCII
    named = export_filename("ct-protocols", {"standard_name": "CT chest", "year": 2024})
    assert named == "ct-protocols_standard_name-ct-chest"  # two standard names never share a file name
    assert (
        len(export_filename("x", {"description": "a" * 500, "protocol": "b" * 500, "model": "c" * 500}))
        <= 150
    )


def test_csv_and_xlsx_answers_are_named_by_their_filters():
    f = {"from": dt.date(2024, 1, 1), "to": dt.date(2024, 12, 31), "protocol": "Chest low dose"}
    for fmt in ("csv", "xlsx"):
        resp = answer([{"a": 1}], {**f, "format": fmt}, "ct-events")
        assert resp.headers["Content-Disposition"] == (
            f'attachment; filename="ct-events_2024-01-01_2024-12-31_chest-low-dose.{fmt}"'
        )


def test_the_xlsx_states_its_time_in_the_configured_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Seoul")
    now = site_now()
    assert now.utcoffset() == dt.timedelta(hours=9) and now.tzname() == "KST"
    body = xlsx.workbook([{"a": 1}], title="t", parameters={})
    summary = openpyxl.load_workbook(io.BytesIO(body))["Summary"]
    exported = {r[0]: r[1] for r in summary.iter_rows(values_only=True) if r and r[0]}["exported"]
    assert exported.endswith(" KST (UTC+09:00)"), exported
    stamp = dt.datetime.strptime(exported[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=now.tzinfo)
    assert abs((stamp - now).total_seconds()) < 60
    monkeypatch.setenv("TZ", "No/Such_Zone")  # not a zone: the machine's local one
    assert xlsx.site_now().utcoffset() == dt.datetime.now().astimezone().utcoffset()
