"""The physicist's report API (`/nmdose/api/dose/report/...`, issue 19) against a real PostgreSQL: every number
equals a direct computation in Python from the synthetic rows the test inserts (medians, p75, the level that
applies, ratios, trends, histograms, the workload), the annual XLSX read back with openpyxl, and the bad inputs
answered 400."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import statistics
from types import SimpleNamespace

import openpyxl
import pytest

from nmdose.config import ReferenceLevel, ReferenceLevelsFile
from nmdose.db import connect
from nmdose.web import pages
from nmdose.web.router import Request, Router
from tests.support import scratch_database

pytestmark = pytest.mark.integration

FDG = "Fluorodeoxyglucose F^18^"
KIDS = (2, 6, 10, 14)  # aged 3: head studies on the scanner without a station name, 2023
LEVELS = [
    ReferenceLevel.model_validate(d)
    for d in (
        # adults: the official level; children 1-5: their own; an example level for every age (never chosen
        # before an official one that applies)
        {"name": "head CTDIvol adults", "modality": "CT", "match": {"protocols": ["^head"]},
         "quantity": "ctdivol_mgy", "value": 30, "source": "test NDRL", "year": 2024, "status": "official",
         "age_band": {"min_years": 18}},
        {"name": "head CTDIvol 1-5", "modality": "CT", "match": {"protocols": ["^head"]},
         "quantity": "ctdivol_mgy", "value": 25, "source": "test paed", "year": 2024, "status": "official",
         "age_band": {"min_years": 1, "max_years": 5}},
        {"name": "head CTDIvol example", "modality": "CT", "match": {"protocols": ["head"]},
         "quantity": "ctdivol_mgy", "value": 20, "source": "test example", "year": 2024, "status": "example"},
        {"name": "chest exam DLP", "modality": "CT", "match": {"descriptions": ["^ct chest"]},
         "quantity": "dlp_mgycm", "value": 500, "source": "test NDRL", "year": 2024, "status": "official"},
        {"name": "FDG activity", "modality": "PT", "match": {"agents": ["fluorodeoxy"]},
         "quantity": "activity_mbq", "value": 300, "source": "test ARSAC", "year": 2024, "status": "official"},
    )
]  # fmt: skip


def pct(values: list[float], q: float) -> float:
    """percentile_cont: linear interpolation between the closest ranks."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def scanner(s: dict) -> str:
    return s["station"] if s["station"] is not None else "Acme X1"


def band(age: float | None) -> str:
    if age is None:
        return "unknown"
    for name, hi in (("0-1", 1), ("1-5", 5), ("5-10", 10), ("10-15", 15), ("15-18", 18)):
        if age < hi:
            return name
    return "adult"


@pytest.fixture(scope="module")
def data(stack):
    """48 studies over 2023-2024 on two scanners (one named by its station, one only by manufacturer and model),
    one CT event each (head for even studies, chest for odd), every 4th with an FDG administration."""
    studies = []
    with scratch_database(stack.cfg, "report") as cfg:
        with contextlib.closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
            for i in range(48):
                head = i % 2 == 0
                date = dt.date(2023 if i < 24 else 2024, 1 + (i * 5) % 12, 1 + i % 27)
                s = {
                    "uid": f"1.2.826.0.77.{i}",
                    "date": date,
                    "time": dt.time(7 + i % 11, (i * 7) % 60),
                    "desc": "CT Head" if head else "CT Chest",
                    "protocol": "Head routine" if head else "Chest routine",
                    "station": "CT1" if i % 4 < 2 else None,
                    "age": 3.0 if i in KIDS else (None if i in (4, 5) else 30.0 + i),
                    "ctdi": 10.0 + i * 1.5,
                    "fdg": 200.0 + 7 * i if i % 4 == 0 else None,
                }
                s["dlp"] = s["ctdi"] * 20
                studies.append(s)
                cur.execute(
                    """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_time,
                           study_description, station_name, manufacturer, model_name, patient_age_years,
                           patient_weight_kg, ct_event_count, ct_total_dlp_mgycm, ct_mean_ctdivol_mgy)
                       VALUES (%s, %s, %s, %s, %s, %s, 'Acme', 'X1', %s, 70, 1, %s, %s)""",
                    (s["uid"], date, date.year, s["time"], s["desc"], s["station"], s["age"], s["dlp"],
                     s["ctdi"]),
                )  # fmt: skip
                cur.execute(
                    """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                           acquisition_protocol, target_region, ctdivol_mgy, dlp_mgycm)
                       VALUES (%s, '#0', 0, %s, %s, %s, 'Head', %s, %s)""",
                    (s["uid"], date, date.year, s["protocol"], s["ctdi"], s["dlp"]),
                )
                if s["fdg"] is not None:
                    cur.execute(
                        """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal,
                               study_date, study_year, source, agent, activity_mbq, activity_per_kg_mbq)
                           VALUES (%s, '#0', 0, %s, %s, 'rrdsr', %s, %s, %s)""",
                        (s["uid"], date, date.year, FDG, s["fdg"], s["fdg"] / 70),
                    )
            # standard names (sql/015_standard_names.sql) on the head studies and the administrations
            cur.execute(
                "UPDATE dose.study SET standard_name = 'CT head std' WHERE study_description = 'CT Head'"
            )
            cur.execute("UPDATE dose.radiopharmaceutical SET standard_name = 'FDG PET std'")
        router = Router()
        cfg = dataclasses.replace(cfg, reference_levels=ReferenceLevelsFile(levels=LEVELS))
        pages.register_routes(router, SimpleNamespace(cfg=cfg))
        yield SimpleNamespace(router=router, studies=studies, cfg=cfg)


def get(data, path, status=200, **query):
    resp = data.router.dispatch(Request("GET", path, query={k: str(v) for k, v in query.items()}))
    assert resp.status == status, resp.body
    return resp if query.get("format") in ("csv", "xlsx") or status != 200 else json.loads(resp.body)


def test_level_comparison_per_protocol_scanner_and_year_equals_a_direct_computation(data):
    got = get(data, "/api/dose/report/levels")
    assert got["measure"] == "ctdivol" and got["group"] == "protocol" and got["compared_with"] == "median"
    rows = {(r["group"], r["scanner"], r["year"]): r for r in got["rows"]}
    cells: dict[tuple, list] = {}
    for s in data.studies:
        cells.setdefault((s["protocol"], scanner(s), s["date"].year), []).append(s)
    assert set(rows) == set(cells) and len(rows) == 8
    for key, members in cells.items():
        r = rows[key]
        values = [s["ctdi"] for s in members]
        assert r["n"] == len(values)
        assert r["median"] == pytest.approx(statistics.median(values))
        assert r["p75"] == pytest.approx(pct(values, 0.75))
        if key[0] == "Chest routine":  # no level applies to chest events
            assert r["level"] is None and r["ratio"] is None and r["above"] is None
            continue
        # official adult and official 1-5 apply; the one applying to more values wins; never the example
        adults = sum(1 for s in members if s["age"] is not None and s["age"] >= 18)
        kids = sum(1 for s in members if s["age"] is not None and 1 <= s["age"] < 5)
        applying = [(-k, name, v) for k, name, v in ((adults, "head CTDIvol adults", 30),
                                                      (kids, "head CTDIvol 1-5", 25)) if k]  # fmt: skip
        count, name, level = min(applying)  # the most values, then by name
        assert (r["level_name"], r["level"], r["level_status"]) == (name, level, "official")
        assert r["level_n"] == -count
        assert r["level_source"] in ("test NDRL", "test paed") and r["unit"] == "mGy"
        assert r["ratio"] == pytest.approx(statistics.median(values) / level)
        assert r["above"] is (statistics.median(values) > level)
    assert any(r["above"] for r in got["rows"]) and any(r["above"] is False for r in got["rows"])
    assert any(r["level_name"] == "head CTDIvol 1-5" for r in got["rows"])  # the children's cell


def test_level_comparison_per_description_uses_the_study_level_and_filters(data):
    got = get(data, "/api/dose/report/levels", measure="dlp", group="description", station="CT1")
    ct1 = [s for s in data.studies if s["station"] == "CT1"]
    assert {r["scanner"] for r in got["rows"]} == {"CT1"}
    for r in got["rows"]:
        values = [s["dlp"] for s in ct1 if s["desc"] == r["group"] and s["date"].year == r["year"]]
        assert r["n"] == len(values) and r["median"] == pytest.approx(statistics.median(values))
        if r["group"] == "CT Chest":
            assert r["level"] == 500 and r["ratio"] == pytest.approx(statistics.median(values) / 500)
        else:
            assert r["level"] is None


def test_level_comparison_of_agents_shows_the_display_name(data):
    got = get(data, "/api/dose/report/levels", measure="activity")
    assert {r["group"] for r in got["rows"]} == {"¹⁸F-FDG"}
    assert {r["group_code_meaning"] for r in got["rows"]} == {FDG}
    for r in got["rows"]:
        values = [s["fdg"] for s in data.studies
                  if s["fdg"] and scanner(s) == r["scanner"] and s["date"].year == r["year"]]  # fmt: skip
        assert r["median"] == pytest.approx(statistics.median(values)) and r["level"] == 300


def test_age_bands_are_groups(data):
    got = get(data, "/api/dose/report/levels", group="age_band")
    counts: dict[str, int] = {}
    for r in got["rows"]:
        counts[r["group"]] = counts.get(r["group"], 0) + r["n"]
    expected: dict[str, int] = {}
    for s in data.studies:
        expected[band(s["age"])] = expected.get(band(s["age"]), 0) + 1
    assert counts == expected and set(counts) == {"1-5", "adult", "unknown"}


def test_trends_per_quarter_have_every_period_and_the_median(data):
    got = get(data, "/api/dose/report/trends", measure="ctdivol", group="protocol", period="quarter")
    assert got["unit"] == "mGy" and got["period"] == "quarter"
    periods = [p["period"] for p in got["periods"]]
    assert periods == [f"{y}-Q{q}" for y in (2023, 2024) for q in (1, 2, 3, 4)]
    for r in got["rows"]:
        year, q = int(r["period"][:4]), int(r["period"][-1])
        values = [s["ctdi"] for s in data.studies if s["protocol"] == r["group"] and s["date"].year == year
                  and (s["date"].month - 1) // 3 + 1 == q]  # fmt: skip
        assert r["n"] == len(values) and r["median"] == pytest.approx(statistics.median(values))
    assert sum(r["n"] for r in got["rows"]) == len(data.studies)
    one = get(data, "/api/dose/report/trends", measure="ctdivol", group="protocol", top=1, period="year")
    assert {r["group"] for r in one["rows"]} == {"Chest routine"}  # 24 each: the tie goes by name
    assert [p["period"] for p in one["periods"]] == ["2023", "2024"]


def test_histogram_counts_every_value_once(data):
    got = get(data, "/api/dose/report/histogram", measure="dlp", group="description", bins=10)
    assert {r["bin"] for r in got["rows"]} <= set(range(1, 11))
    for desc in ("CT Head", "CT Chest"):
        values = [s["dlp"] for s in data.studies if s["desc"] == desc]
        assert sum(r["n"] for r in got["rows"] if r["group"] == desc) == len(values)
    lo = min(s["dlp"] for s in data.studies)
    hi = pct([s["dlp"] for s in data.studies], 0.99)
    first = min(got["rows"], key=lambda r: r["bin"])
    assert first["lo"] == pytest.approx(lo)
    assert max(r["hi"] for r in got["rows"]) == pytest.approx(hi)
    assert sum(r["above_range"] for r in got["rows"]) == sum(1 for s in data.studies if s["dlp"] > hi)


def test_workload_by_kind_weekday_and_hour(data):
    got = get(data, "/api/dose/report/workload")
    expected: dict[tuple, int] = {}
    for s in data.studies:
        key = ("CT+NM" if s["fdg"] else "CT", s["date"].isoweekday(), s["time"].hour)
        expected[key] = expected.get(key, 0) + 1
    assert {(r["kind"], r["weekday"], r["hour"]): r["n"] for r in got["rows"]} == expected


def test_annual_report_json_csv_and_xlsx(data, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Seoul")
    got = get(data, "/api/dose/report/annual", year=2024)
    assert got["year"] == 2024 and "KST (UTC+09:00)" in got["generated"]
    assert {r["year"] for r in got["rows"]} == {2024}
    assert {r["measure"] for r in got["rows"]} == {"ctdivol", "dlp", "activity", "per_kg"}
    in_year = [s for s in data.studies if s["date"].year == 2024]
    protocols = {r["protocol"]: r for r in got["protocols"]}
    head = [s["ctdi"] for s in in_year if s["protocol"] == "Head routine"]
    assert protocols["Head routine"]["ctdivol_median"] == pytest.approx(statistics.median(head))
    assert [a["agent"] for a in got["agents"]] == ["¹⁸F-FDG"]
    assert sum(r["n"] for r in got["workload"]) == len(in_year)

    csv_resp = get(data, "/api/dose/report/annual", year=2024, format="csv")
    lines = csv_resp.body.decode("utf-8-sig").splitlines()
    assert (
        len(lines) == 1 + len(got["rows"]) and "annual-report-2024" in csv_resp.headers["Content-Disposition"]
    )

    xlsx = get(data, "/api/dose/report/annual", year=2024, format="xlsx")
    assert 'filename="annual-report-2024.xlsx"' in xlsx.headers["Content-Disposition"]
    wb = openpyxl.load_workbook(io.BytesIO(xlsx.body))
    assert wb.sheetnames == [
        "Summary",
        "Reference levels",
        "CT protocols",
        "Radiopharmaceuticals",
        "Workload",
    ]
    summary = {r[0]: r[1] for r in wb["Summary"].iter_rows(values_only=True) if r and r[0]}
    assert "KST (UTC+09:00)" in summary["generated"] and summary["parameter year"] == "2024"
    sheet = list(wb["Reference levels"].iter_rows(values_only=True))
    header, body = sheet[0], sheet[1:]
    assert len(body) == len(got["rows"])
    by_name = [dict(zip(header, row, strict=True)) for row in body]
    chest = next(r for r in by_name if r["group"] == "CT Chest" and r["scanner"] == "CT1")
    want = next(r for r in got["rows"] if r["group"] == "CT Chest" and r["scanner"] == "CT1")
    assert chest["median"] == pytest.approx(want["median"]) and chest["ratio"] == pytest.approx(want["ratio"])


def test_bad_input_gets_a_clear_400(data):
    resp = get(data, "/api/dose/report/levels", 400, measure="activity", group="protocol")
    assert "group" in json.loads(resp.body)["error"]
    resp = get(data, "/api/dose/report/annual", 400)
    assert "year" in json.loads(resp.body)["error"]
    for path, query in [
        ("/api/dose/report/trends", {"period": "week"}),
        ("/api/dose/report/histogram", {"bins": "1000"}),
        ("/api/dose/report/levels", {"measure": "mass"}),
        ("/api/dose/report/workload", {"nonsense": "1"}),
        ("/api/dose/report/annual", {"year": "20x4"}),
    ]:
        resp = get(data, path, 400, **query)
        assert json.loads(resp.body)["error"]


def test_exports_need_dose_export_and_pages_are_shells(data):
    routes = {r.pattern: r for r in pages.ROUTES}
    for path in ("levels", "trends", "histogram", "workload", "annual"):
        r = routes[f"/api/dose/report/{path}"]
        assert (r.permission, r.export_permission) == ("dose:read", "dose:export")
    page = data.router.dispatch(Request("GET", "/ui/report"))
    assert page.status == 200 and b'src="../static/report.js"' in page.body
    printed = data.router.dispatch(Request("GET", "/ui/report/print", query={"year": "2024"}))
    assert printed.status == 200 and b"&quot;print&quot;: true" in printed.body
    assert b'src="../../static/report.js"' in printed.body


def test_a_json_answer_is_kept_until_the_data_changes(data):
    first = get(data, "/api/dose/report/levels", measure="dlp", group="description")
    with contextlib.closing(connect(data.cfg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dose.web_cache WHERE key LIKE 'report_levels:%'")
        assert cur.fetchone()[0] >= 1
    assert get(data, "/api/dose/report/levels", measure="dlp", group="description") == first


def test_standard_names_are_groups_for_ct_and_nm(data):
    got = get(data, "/api/dose/report/levels", measure="dlp", group="standard_name")
    totals: dict[str, list] = {}
    for r in got["rows"]:
        totals.setdefault(r["group"], []).append(r)
    assert set(totals) == {"CT head std", ""}  # the chest studies have none yet
    for r in got["rows"]:
        desc = "CT Head" if r["group"] else "CT Chest"
        values = [s["dlp"] for s in data.studies
                  if s["desc"] == desc and scanner(s) == r["scanner"] and s["date"].year == r["year"]]  # fmt: skip
        assert r["n"] == len(values) and r["median"] == pytest.approx(statistics.median(values))
        # the chest examinations' DLP level matches their description, whatever their standard name
        assert r["level"] == (None if r["group"] else 500)
    nm = get(data, "/api/dose/report/levels", measure="per_kg", group="standard_name")
    assert {r["group"] for r in nm["rows"]} == {"FDG PET std"}
    assert sum(r["n"] for r in nm["rows"]) == sum(1 for s in data.studies if s["fdg"])
