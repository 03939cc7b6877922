"""The /nmdose/api/ routes against a real PostgreSQL: every number equals a direct computation in Python from
the rows the test inserts; plus the pages and static files served by the research Orthanc itself."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import io
import json
import random
import statistics
import time
import urllib.request
from types import SimpleNamespace

import pytest

from nmdose.db import connect
from nmdose.db.migrate import migrate
from nmdose.web import pages
from nmdose.web.router import Request, Router
from tests.support import REPO

pytestmark = pytest.mark.integration

PROTOCOLS = ["Head routine", "Chest low dose", "Abdomen <script>alert(1)</script>"]
AGENTS = ["Fluorodeoxyglucose F^18^", "Tc-99m MDP"]
XSS = "<script>alert('nmdose')</script>"


def pct(values: list[float], q: float) -> float:
    """percentile_cont: linear interpolation between the closest ranks."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


@pytest.fixture(scope="module")
def data(stack):
    """A scratch database with census, retrieval and dose rows generated from a seeded random source."""
    name = f"web_{int(time.time() * 1000)}"
    with contextlib.closing(connect(stack.cfg, "postgres", autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    cfg = dataclasses.replace(
        stack.cfg, postgresql=stack.cfg.postgresql.model_copy(update={"database": name})
    )
    rnd = random.Random(7)
    studies, events, admins = [], [], []
    with contextlib.closing(connect(cfg)) as conn:
        migrate(conn, REPO / "sql")
        with conn.cursor() as cur:
            for i in range(120):
                uid = f"1.2.826.0.1.{i}"
                date = dt.date(2021 + i % 4, 1 + i % 12, 1 + i % 28)
                desc = ["CT Chest", "PET-CT WB", XSS][i % 3]
                target = i % 5 != 0
                state = [None, "done", "failed", "pending", "done"][i % 5] if target else None
                corrected = ["CT", "PT"] if desc == "PET-CT WB" and i % 2 else None
                cur.execute(
                    """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found,
                       modalities_corrected, correction_reason, patient_id, is_target)
                       VALUES (%s, 'simulationPACS', %s, %s, %s, %s, %s, %s, %s)""",
                    (uid, date, desc, ["CT"], corrected, "majority" if corrected else None, f"P{i}", target),
                )
                if state:
                    cur.execute(
                        "INSERT INTO rpacs.retrieval (study_instance_uid, source_node, state, last_error)"
                        " VALUES (%s, 'simulationPACS', %s, %s)",
                        (uid, state, XSS if state == "failed" else None),
                    )
                weight = round(rnd.uniform(45, 110), 1)
                station = ["CT1", "CT2"][i % 2]
                sex = ["M", "F"][i % 2]
                studies.append(dict(uid=uid, date=date, desc=desc, station=station, weight=weight, sex=sex))
                cur.execute(
                    """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                       station_name, patient_sex, patient_weight_kg, ct_event_count, ct_total_dlp_mgycm)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, 0, NULL)""",
                    (uid, date, date.year, desc, station, sex, weight),
                )
                for k in range(1 + i % 3):
                    e = dict(
                        uid=uid, date=date, protocol=rnd.choice(PROTOCOLS), ctdi=round(rnd.uniform(1, 60), 2)
                    )
                    e["dlp"] = round(e["ctdi"] * rnd.uniform(10, 50), 1)
                    events.append(e)
                    cur.execute(
                        """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date,
                           study_year, acquisition_protocol, ctdivol_mgy, dlp_mgycm)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                        (uid, f"#{k}", k, date, date.year, e["protocol"], e["ctdi"], e["dlp"]),
                    )
                cur.execute(
                    """UPDATE dose.study SET ct_event_count = c, ct_total_dlp_mgycm = d FROM
                       (SELECT count(*) c, sum(dlp_mgycm) d FROM dose.ct_event WHERE study_instance_uid = %s) x
                       WHERE study_instance_uid = %s""",
                    (uid, uid),
                )
                if desc == "PET-CT WB":
                    a = dict(uid=uid, date=date, agent=AGENTS[i % 2], mbq=round(rnd.uniform(150, 400), 1))
                    a["per_kg"] = a["mbq"] / weight
                    admins.append(a)
                    cur.execute(
                        """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal,
                           study_date, study_year, source, agent, activity_mbq, activity_per_kg_mbq)
                           VALUES (%s, '#0', 0, %s, %s, 'rrdsr', %s, %s, %s)""",
                        (uid, date, date.year, a["agent"], a["mbq"], a["per_kg"]),
                    )
        conn.commit()
    router = Router()
    pages.register_routes(router, SimpleNamespace(cfg=cfg))
    yield SimpleNamespace(router=router, studies=studies, events=events, admins=admins)
    with contextlib.closing(connect(stack.cfg, "postgres", autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def api(data, path, **query):
    resp = data.router.dispatch(Request("GET", path, query={k: str(v) for k, v in query.items()}))
    assert resp.status == 200, resp.body
    return resp if query.get("format") == "csv" else json.loads(resp.body)["rows"]


def test_ct_protocol_statistics_equal_a_direct_computation(data):
    rows = {r["protocol"]: r for r in api(data, "/api/dose/ct-protocols")}
    assert set(rows) == set(PROTOCOLS)
    for protocol in PROTOCOLS:
        ctdi = [e["ctdi"] for e in data.events if e["protocol"] == protocol]
        dlp = [e["dlp"] for e in data.events if e["protocol"] == protocol]
        r = rows[protocol]
        assert r["n"] == len(ctdi)
        assert r["ctdivol_median"] == pytest.approx(statistics.median(ctdi))
        assert r["dlp_median"] == pytest.approx(statistics.median(dlp))
        assert r["ctdivol_mean"] == pytest.approx(statistics.fmean(ctdi))
        assert (r["dlp_q1"], r["dlp_q3"]) == pytest.approx((pct(dlp, 0.25), pct(dlp, 0.75)))
        assert r["ctdivol_p75"] == pytest.approx(pct(ctdi, 0.75))


def test_filters_change_the_numbers_as_computed(data):
    lo, hi = dt.date(2022, 3, 1), dt.date(2023, 6, 30)
    ct2 = {s["uid"] for s in data.studies if s["station"] == "CT2"}
    rows = api(data, "/api/dose/ct-protocols", protocol=PROTOCOLS[0], station="CT2", **{"from": lo, "to": hi})
    dlp = [e["dlp"] for e in data.events
           if e["protocol"] == PROTOCOLS[0] and e["uid"] in ct2 and lo <= e["date"] <= hi]  # fmt: skip
    assert len(rows) == 1 and rows[0]["n"] == len(dlp) > 0
    assert rows[0]["dlp_median"] == pytest.approx(statistics.median(dlp))


def test_per_description_statistics_are_per_study_totals(data):
    rows = {r["description"]: r for r in api(data, "/api/dose/ct-protocols", group="description")}
    for desc in {s["desc"] for s in data.studies}:
        uids = {s["uid"] for s in data.studies if s["desc"] == desc}
        totals = [sum(e["dlp"] for e in data.events if e["uid"] == u) for u in uids]
        assert rows[desc]["n"] == len(uids)
        assert rows[desc]["dlp_median"] == pytest.approx(statistics.median(totals))


def test_activity_per_agent_equals_a_direct_computation(data):
    rows = {r["agent"]: r for r in api(data, "/api/dose/activity")}
    for agent in AGENTS:
        mbq = [a["mbq"] for a in data.admins if a["agent"] == agent]
        per_kg = [a["per_kg"] for a in data.admins if a["agent"] == agent]
        assert rows[agent]["n"] == len(mbq)
        assert rows[agent]["activity_median"] == pytest.approx(statistics.median(mbq))
        assert rows[agent]["per_kg_median"] == pytest.approx(statistics.median(per_kg))
    women = api(data, "/api/dose/activity", sex="F", agent=AGENTS[0])
    f_uids = {s["uid"] for s in data.studies if s["sex"] == "F"}
    expected = [a["mbq"] for a in data.admins if a["agent"] == AGENTS[0] and a["uid"] in f_uids]
    assert [r["n"] for r in women] == ([len(expected)] if expected else [])


def test_research_yearly_counts_studies_per_year_description_and_state(data):
    rows = api(data, "/api/research/yearly")
    assert sum(r["studies"] for r in rows) == len(data.studies)
    by = {(r["year"], r["description"], r["state"]): r["studies"] for r in rows}
    assert len(by) == len(rows)  # one row per year x description x modality set x state here
    for year, desc, state in by:
        expected = [
            s for i, s in enumerate(data.studies)
            if s["date"].year == year and s["desc"] == desc and _state(i) == state
        ]  # fmt: skip
        assert by[(year, desc, state)] == len(expected)
    assert {r["state"] for r in rows} == {"retrieved", "pending", "failed", "not_target"}
    only = api(data, "/api/research/yearly", from_year=2023, to_year=2023)
    assert {r["year"] for r in only} == {2023}
    assert sum(r["studies"] for r in only) == sum(1 for s in data.studies if s["date"].year == 2023)


def _state(i: int) -> str:
    """The state the fixture gave study i: not a target every 5th, else its retrieval row."""
    if i % 5 == 0:
        return "not_target"
    return {1: "retrieved", 4: "retrieved", 2: "failed", 3: "pending"}[i % 5]


def test_corrections_and_failed_lists(data):
    rows = api(data, "/api/research/corrections")
    assert [(r["description"], r["modalities_corrected"]) for r in rows] == [("PET-CT WB", "CT\\PT")]
    assert rows[0]["studies"] == sum(1 for i in range(120) if i % 3 == 1 and i % 2)
    failed = api(data, "/api/research/failed")
    assert len(failed) == sum(1 for i in range(120) if i % 5 == 2) and failed[0]["last_error"] == XSS


def test_csv_export_equals_the_json_rows(data):
    rows = api(data, "/api/dose/ct-events", station="CT1")
    resp = api(data, "/api/dose/ct-events", station="CT1", format="csv")
    assert resp.content_type.startswith("text/csv") and "attachment" in resp.headers["Content-Disposition"]
    parsed = list(csv.DictReader(io.StringIO(resp.body.decode("utf-8-sig"))))
    ct1 = {s["uid"] for s in data.studies if s["station"] == "CT1"}
    assert len(parsed) == len(rows) == sum(1 for e in data.events if e["uid"] in ct1)
    assert [float(p["dlp_mgycm"]) for p in parsed] == [r["dlp_mgycm"] for r in rows]
    assert [p["study_instance_uid"] for p in parsed] == [r["study_instance_uid"] for r in rows]


def test_study_detail_lists_events_and_links_to_orthanc(data):
    uid = "1.2.826.0.1.4"
    s = api_one(data, f"/api/dose/study/{uid}")
    assert [e["dlp_mgycm"] for e in s["ct_events"]] == [e["dlp"] for e in data.events if e["uid"] == uid]
    assert s["orthanc_study_id"] and s["orthanc_study_id"].count("-") == 4
    missing = data.router.dispatch(Request("GET", "/api/dose/study/9.9.9"))
    assert missing.status == 404 and "9.9.9" in json.loads(missing.body)["error"]


def api_one(data, path):
    resp = data.router.dispatch(Request("GET", path))
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


def test_routes_are_mounted_in_the_research_orthanc(stack):
    base = stack.cfg.research_node.http_url.rstrip("/") + "/nmdose"
    with urllib.request.urlopen(base + "/ui/research") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
    with urllib.request.urlopen(base + "/static/chart.umd.min.js") as r:
        assert r.headers["Content-Type"].startswith("text/javascript") and b"Chart.js" in r.read(300)
    with urllib.request.urlopen(base + "/api/research/yearly") as r:
        assert "rows" in json.loads(r.read())
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(base + "/api/dose/ct-protocols?from=yesterday")
    assert exc.value.code == 400


def test_query_values_arrive_decoded_through_orthanc(stack):
    """Orthanc 1.10.1 passes GET values percent-encoded; entry.py decodes them once ("C+" stays "C+")."""
    base = stack.cfg.research_node.http_url.rstrip("/") + "/nmdose"
    for encoded, shown in (("A%2BB%20%C3%A9", "A+B é"), ("A+B", "A B")):
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"{base}/api/dose/activity?sex={encoded}")
        assert f"got {shown!r}" in json.loads(exc.value.read())["error"]
