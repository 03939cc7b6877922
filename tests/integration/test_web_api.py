"""The /nmdose/api/ routes against a real PostgreSQL: every number equals a direct computation in Python from
the rows the test inserts; plus the pages and static files served by the research Orthanc itself."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import http.client
import io
import json
import random
import re
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from types import SimpleNamespace

import openpyxl
import pytest

from nmdose.config import ReferenceLevel, ReferenceLevelsFile
from nmdose.db import connect
from nmdose.db.migrate import migrate
from nmdose.dose.derived import CT_K_SOURCE_ADULT, CT_K_SOURCE_CHILD, NM_E_SOURCE, age_band
from nmdose.web import pages
from nmdose.web.router import Request, Router
from tests.support import REPO

pytestmark = pytest.mark.integration

PROTOCOLS = ["Head routine", "Chest low dose", "Abdomen <script>alert(1)</script>"]
AGENTS = ["Fluorodeoxyglucose F^18^", "Tc-99m MDP"]
REGIONS = ["Head", "Chest", "Abdomen and Pelvis"]
XSS = "<script>alert('nmdose')</script>"
IMPLAUSIBLE = 4  # study 4: PET-CT WB with FDG (AGENTS[0])
SSDE_METHOD = "Estimated from Water Equivalent Diameter"
NET_NOTE = "net activity: pre at 09:50, post at 10:20, decay-corrected to the injection at 10:00"
# Levels made for this data (the shipped file is tested in tests/unit/web): one of each kind of match.
LEVELS = [
    ReferenceLevel.model_validate(d)
    for d in (
        {"name": "head CTDIvol adults", "modality": "CT", "match": {"protocols": ["^head"]},
         "quantity": "ctdivol_mgy", "value": 30, "source": "test", "year": 2024, "status": "official",
         "age_band": {"min_years": 18}},
        {"name": "CT chest exam DLP", "modality": "CT", "match": {"descriptions": ["^ct chest"]},
         "quantity": "dlp_mgycm", "value": 900, "source": "test", "year": 2024, "status": "official"},
        {"name": "chest region event DLP", "modality": "CT", "match": {"target_regions": ["^chest$"]},
         "quantity": "dlp_mgycm", "per": "event", "value": 1200, "source": "test", "year": 2024,
         "status": "proposed"},
        {"name": "FDG activity", "modality": "PT", "match": {"agents": ["fluorodeoxy"]},
         "quantity": "activity_mbq", "value": 300, "source": "test", "year": 2024, "status": "official"},
        {"name": "MDP per kg", "modality": "NM", "match": {"agents": ["mdp"], "descriptions": ["PET"]},
         "quantity": "activity_mbq_per_kg", "value": 4.0, "source": "test", "year": 2024, "status": "example"},
    )
]  # fmt: skip


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
                age = None if i % 7 == 0 else float(3 + (i * 13) % 85)
                study = dict(uid=uid, date=date, desc=desc, station=station, weight=weight, sex=sex, age=age)
                studies.append(study)
                cur.execute(
                    """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                       station_name, patient_sex, patient_weight_kg, patient_age_years, ct_event_count,
                       ct_total_dlp_mgycm) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, NULL)""",
                    (uid, date, date.year, desc, station, sex, weight, age),
                )
                has_k = i % 4 != 0  # the others: a region without k, so no CT effective dose
                k = 0.0145 if age_band(age) is None else 0.0330
                for n in range(1 + i % 3):
                    e = dict(
                        uid=uid, date=date, protocol=rnd.choice(PROTOCOLS), ctdi=round(rnd.uniform(1, 60), 2)
                    )
                    e["dlp"] = round(e["ctdi"] * rnd.uniform(10, 50), 1)
                    e["region"] = rnd.choice(REGIONS)
                    e["ordinal"], e["desc"], e["age"] = n, desc, age
                    # the first event of every other study has a size-specific dose estimate (TID 10013 SSDE)
                    e["ssde"] = round(e["ctdi"] * 1.3, 2) if n == 0 and i % 2 == 0 else None
                    events.append(e)
                    cur.execute(
                        """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date,
                           study_year, acquisition_protocol, target_region, ctdivol_mgy, dlp_mgycm,
                           k_msv_per_mgycm, effective_dose_msv, ssde_mgy, ssde_method, ssde_method_code,
                           ssde_size_mm, ssde_size_kind, water_equivalent_diameter_mm)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                        (uid, f"#{n}", n, date, date.year, e["protocol"], e["region"], e["ctdi"], e["dlp"],
                         k if has_k else None, e["dlp"] * k if has_k else None, e["ssde"],
                         SSDE_METHOD if e["ssde"] else None, "DCM:113988" if e["ssde"] else None,
                         250.0 if e["ssde"] else None, "water_equivalent_diameter" if e["ssde"] else None,
                         250.0 if e["ssde"] else None),
                    )  # fmt: skip
                study["dlp"] = sum(e["dlp"] for e in events if e["uid"] == uid)
                study["ct_e"] = round(study["dlp"] * k, 6) if has_k else None
                if desc == "PET-CT WB":
                    a = dict(uid=uid, date=date, agent=AGENTS[i % 2], mbq=round(rnd.uniform(150, 400), 1))
                    if i == IMPLAUSIBLE:  # an FDG of 2000 MBq: kept, with the parser's plausibility warning
                        a["mbq"] = 2000.0
                    a["plausibility"] = (
                        f"2000 MBq of {a['agent']} is outside 20-1500 MBq plausible for FDG"
                        if i == IMPLAUSIBLE else None
                    )  # fmt: skip
                    # every other administration has pre/post measurements and their net at injection
                    a["net"] = round(a["mbq"] - 4.5, 3) if i % 4 == 1 else None
                    a["per_kg"] = a["mbq"] / weight
                    a["desc"], a["age"], a["ordinal"] = desc, age, 0
                    fdg = a["agent"] == AGENTS[0] and age_band(age) is None
                    a["coef"] = 0.019 if fdg else None
                    a["e"] = round(a["mbq"] * 0.019, 6) if fdg else None
                    a["note"] = (
                        f"fdg: {NM_E_SOURCE}" if fdg else "no coefficient for mdp in the checked subset"
                    )
                    admins.append(a)
                    cur.execute(
                        """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal,
                           study_date, study_year, source, agent, activity_mbq, activity_per_kg_mbq,
                           coefficient_msv_per_mbq, effective_dose_msv, details, net_activity_mbq,
                           pre_measured_datetime, post_measured_datetime, start_datetime,
                           administered_activity_rule, start_datetime_source, plausibility)
                           VALUES (%s, '#0', 0, %s, %s, 'rrdsr', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                                   'rrdsr_administered', 'rrdsr', %s)""",
                        (uid, date, date.year, a["agent"], a["mbq"], a["per_kg"], a["coef"], a["e"],
                         json.dumps({"derived_note": a["note"],
                                     **({"net_activity_note": NET_NOTE} if a["net"] else {})}),
                         a["net"], dt.datetime.combine(date, dt.time(9, 50)) if a["net"] else None,
                         dt.datetime.combine(date, dt.time(10, 20)) if a["net"] else None,
                         dt.datetime.combine(date, dt.time(10, 0)), a["plausibility"]),
                    )  # fmt: skip
                    study["nm_e"] = a["e"]
                else:
                    study["nm_e"] = None
                parts = [study["ct_e"]] + ([study["nm_e"]] if desc == "PET-CT WB" else [])
                study["total_e"] = None if None in parts else round(sum(parts), 6)
                derived = {"age_band_years": age_band(age), "notes": [] if has_k else ["CT: no k for region"],
                           "sources": {"ct_k_adult": CT_K_SOURCE_ADULT, "ct_k_child": CT_K_SOURCE_CHILD,
                                       "nm": NM_E_SOURCE}}  # fmt: skip
                warnings = [f"plausibility: {a['plausibility']}"] if i == IMPLAUSIBLE else []
                cur.execute(
                    """UPDATE dose.study SET ct_event_count = c, ct_total_dlp_mgycm = d, ct_effective_dose_msv = %s,
                              nm_effective_dose_msv = %s, total_effective_dose_msv = %s, derived = %s, warnings = %s
                         FROM (SELECT count(*) c, sum(dlp_mgycm) d FROM dose.ct_event WHERE study_instance_uid = %s) x
                        WHERE study_instance_uid = %s""",
                    (
                        study["ct_e"],
                        study["nm_e"],
                        study["total_e"],
                        json.dumps(derived),
                        json.dumps(warnings),
                        uid,
                        uid,
                    ),
                )
            for n, (path, resolved) in enumerate(
                [("/spool/a.dcm", False), ("/spool/b.dcm", True), (XSS, False)]
            ):
                cur.execute(
                    """INSERT INTO dose.dead_letter (key, file_path, source, error, attempts, last_seen, resolved_at)
                       VALUES (%s, %s, 'orthanc', %s, %s, now() - %s * interval '1 hour',
                               CASE WHEN %s THEN now() END)""",
                    (f"path:{path}", path, f"parse error {n}", n + 1, n, resolved),
                )
        conn.commit()
    router = Router()
    cfg = dataclasses.replace(cfg, reference_levels=ReferenceLevelsFile(levels=LEVELS))
    pages.register_routes(router, SimpleNamespace(cfg=cfg))
    yield SimpleNamespace(router=router, studies=studies, events=events, admins=admins, cfg=cfg)
    with contextlib.closing(connect(stack.cfg, "postgres", autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def api(data, path, **query):
    resp = data.router.dispatch(Request("GET", path, query={k: str(v) for k, v in query.items()}))
    assert resp.status == 200, resp.body
    return resp if query.get("format") in ("csv", "xlsx") else json.loads(resp.body)["rows"]


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
        means = [statistics.fmean(e["ctdi"] for e in data.events if e["uid"] == u) for u in uids]
        assert rows[desc]["ctdivol_median"] == pytest.approx(statistics.median(means))
        assert rows[desc]["ctdivol_p95"] == pytest.approx(pct(means, 0.95))


def test_activity_per_agent_equals_a_direct_computation(data):
    rows = {r["agent_code_meaning"]: r for r in api(data, "/api/dose/activity")}
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


def test_ssde_beside_ctdivol_per_protocol_and_in_the_event_export(data):
    """Issue 16 item 5: the median SSDE of the events that have one and their number, per protocol."""
    rows = {r["protocol"]: r for r in api(data, "/api/dose/ct-protocols")}
    for protocol in PROTOCOLS:
        ssde = [e["ssde"] for e in data.events if e["protocol"] == protocol and e["ssde"] is not None]
        assert rows[protocol]["ssde_n"] == len(ssde) > 0
        assert rows[protocol]["ssde_median"] == pytest.approx(statistics.median(ssde))
    resp = api(data, "/api/dose/ct-events", station="CT1", format="csv")
    parsed = list(csv.DictReader(io.StringIO(resp.body.decode("utf-8-sig"))))
    for column in ("ssde_mgy", "ssde_method", "ssde_size_mm", "ssde_size_kind", "water_equivalent_diameter_mm",
                   "effective_diameter_mm", "lateral_dimension_mm", "ap_dimension_mm"):  # fmt: skip
        assert column in parsed[0]
    ct1 = {s["uid"] for s in data.studies if s["station"] == "CT1"}
    expected = sorted(e["ssde"] for e in data.events if e["uid"] in ct1 and e["ssde"] is not None)
    assert sorted(float(p["ssde_mgy"]) for p in parsed if p["ssde_mgy"]) == expected
    assert {p["ssde_size_kind"] for p in parsed if p["ssde_mgy"]} == {"water_equivalent_diameter"}


def test_study_detail_shows_ssde_net_activity_rule_and_the_plausibility_warning(data):
    uid = f"1.2.826.0.1.{IMPLAUSIBLE}"
    s = api_one(data, f"/api/dose/study/{uid}")
    first = s["ct_events"][0]
    assert first["ssde_mgy"] == next(e["ssde"] for e in data.events if e["uid"] == uid and e["ordinal"] == 0)
    assert (first["ssde_size_mm"], first["ssde_size_kind"], first["ssde_method"]) == (
        250.0,
        "water_equivalent_diameter",
        SSDE_METHOD,
    )
    (adm,) = s["radiopharmaceuticals"]
    assert adm["activity_mbq"] == 2000.0 and adm["plausibility"].startswith("2000 MBq of")
    assert (
        adm["administered_activity_rule"] == "rrdsr_administered" and adm["start_datetime_source"] == "rrdsr"
    )
    assert s["warnings"] == [f"plausibility: {adm['plausibility']}"]
    with_net = next(a for i, a in enumerate(data.admins) if a["net"] is not None)
    s = api_one(data, f"/api/dose/study/{with_net['uid']}")
    (adm,) = s["radiopharmaceuticals"]
    assert adm["net_activity_mbq"] == with_net["net"] and adm["net_activity_note"] == NET_NOTE
    assert adm["pre_measured_datetime"].endswith("09:50:00") and adm["post_measured_datetime"].endswith(
        "10:20:00"
    )
    assert adm["plausibility"] is None


def test_plausibility_warnings_are_counted_per_agent_and_exported_with_the_net_activity(data):
    rows = {r["agent_code_meaning"]: r for r in api(data, "/api/dose/activity")}
    for agent in AGENTS:
        expected = sum(1 for a in data.admins if a["agent"] == agent and a["plausibility"])
        assert rows[agent]["plausibility_warnings"] == expected
    assert rows[AGENTS[0]]["plausibility_warnings"] == 1
    resp = api(data, "/api/dose/activity-points", format="csv")
    parsed = list(csv.DictReader(io.StringIO(resp.body.decode("utf-8-sig"))))
    for column in ("net_activity_mbq", "administered_activity_rule", "start_datetime_source",
                   "pre_measured_datetime", "post_measured_datetime", "plausibility"):  # fmt: skip
        assert column in parsed[0]
    flagged = [p for p in parsed if p["plausibility"]]
    assert [(p["study_instance_uid"], float(p["activity_mbq"])) for p in flagged] == [
        (f"1.2.826.0.1.{IMPLAUSIBLE}", 2000.0)
    ]
    nets = sorted(float(p["net_activity_mbq"]) for p in parsed if p["net_activity_mbq"])
    assert nets == sorted(a["net"] for a in data.admins if a["net"] is not None)


def test_agents_are_shown_as_people_write_them_and_filtered_by_either_name(data):
    """Issue 16 item 6: `Fluorodeoxyglucose F^18^` is shown as `¹⁸F-FDG`, the stored text kept beside it; the
    filter finds the same rows by the shown name or by the stored text."""
    rows = api(data, "/api/dose/activity")
    assert {(r["agent"], r["agent_code_meaning"]) for r in rows} == {
        ("¹⁸F-FDG", AGENTS[0]), ("⁹⁹ᵐTc-MDP", AGENTS[1])
    }  # fmt: skip
    by_raw = api(data, "/api/dose/activity", agent=AGENTS[0])
    assert api(data, "/api/dose/activity", agent="¹⁸F-FDG") == by_raw
    assert api(data, "/api/dose/activity", agent="¹⁸f-fdg") == by_raw  # case-insensitive
    assert [r["n"] for r in by_raw] == [sum(1 for a in data.admins if a["agent"] == AGENTS[0])]
    assert api(data, "/api/dose/ct-events", agent="⁹⁹ᵐTc-MDP") == api(
        data, "/api/dose/ct-events", agent=AGENTS[1]
    )
    points = api(data, "/api/dose/activity-points", format="csv")
    header = next(csv.reader(io.StringIO(points.body.decode("utf-8-sig"))))
    assert header[header.index("agent") + 1] == "agent_code_meaning"
    parsed = list(csv.DictReader(io.StringIO(points.body.decode("utf-8-sig"))))
    assert {(p["agent"], p["agent_code_meaning"]) for p in parsed} == {
        ("¹⁸F-FDG", AGENTS[0]), ("⁹⁹ᵐTc-MDP", AGENTS[1])
    }  # fmt: skip
    boxes = api(data, "/api/dose/box", measure="activity", group="agent")
    assert {r["agent"] for r in boxes} == {"¹⁸F-FDG", "⁹⁹ᵐTc-MDP"}
    outliers = outlier_answer(data, levels="all")["rows"]
    administrations = [r for r in outliers if r["kind"] == "administration"]
    assert administrations and {(r["group"], r["agent_code_meaning"]) for r in administrations} <= {
        ("¹⁸F-FDG", AGENTS[0]), ("⁹⁹ᵐTc-MDP", AGENTS[1])
    }  # fmt: skip
    assert {r["agent_code_meaning"] for r in outliers if r["kind"] != "administration"} == {None}
    (adm,) = api_one(data, f"/api/dose/study/1.2.826.0.1.{IMPLAUSIBLE}")["radiopharmaceuticals"]
    assert (adm["agent"], adm["agent_code_meaning"]) == ("¹⁸F-FDG", AGENTS[0])


def test_research_imports_lists_the_watch_folder_imports_newest_first_without_the_folder_name(data):
    with contextlib.closing(connect(data.cfg)) as conn, conn, conn.cursor() as cur:
        for i, outcome in enumerate(("archived", "failed")):
            cur.execute(
                """INSERT INTO rpacs.import_run (folder_hash, content_key, started_at, outcome, files, dicom_files,
                   stored_files, bad_files, studies, study_uids, bytes, seconds, error)
                   VALUES (%s, 'k', now() - %s * interval '1 hour', %s, 3, 2, %s, %s, 1, %s, 2500000, 1.5, %s)""",
                (
                    f"hmac:{i}abcdef0123456789",
                    2 - i,
                    outcome,
                    2 - 2 * i,
                    2 * i,
                    ["1.2.3.4"],
                    "bad.dcm: cut"[: 12 * i],
                ),
            )
    rows = api(data, "/api/research/imports")
    assert [r["outcome"] for r in rows[:2]] == ["failed", "archived"]  # newest first
    assert (
        rows[0]["folder"] == "hmac:1abcdef"
        and rows[0]["bad_files"] == 2
        and rows[0]["error"] == "bad.dcm: cut"
    )
    assert rows[1]["stored_files"] == 2 and rows[1]["study_uids"] == "1.2.3.4" and rows[1]["bytes"] == 2500000
    assert len(api(data, "/api/research/imports", limit=1)) == 1
    resp = data.router.dispatch(Request("GET", "/api/research/imports", query={"limit": "0"}))
    assert resp.status == 400


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


# ----- reference levels, outliers, box plots, effective dose, dead letters, XLSX, Orthanc redirect -------------


def _matches(patterns: list[str], value: str | None) -> bool:
    """What PostgreSQL's `value ~* ANY (patterns)` does for these simple patterns (no patterns: no condition)."""
    return not patterns or (value is not None and any(re.search(p, value, re.IGNORECASE) for p in patterns))


def _age_ok(level, age) -> bool:
    band = level.age_band
    if band is None:
        return True
    lo, hi = band.min_years, band.max_years
    return (lo is None or (age is not None and age >= lo)) and (hi is None or (age is not None and age < hi))


def _event_levels(e):
    return [
        lv for lv in LEVELS
        if lv.modality == "CT" and lv.per == "event" and _matches(lv.match.protocols, e["protocol"])
        and _matches(lv.match.descriptions, e["desc"]) and _matches(lv.match.target_regions, e["region"])
        and _age_ok(lv, e["age"])
    ]  # fmt: skip


def _study_levels(data, s):
    events = [e for e in data.events if e["uid"] == s["uid"]]
    return [
        lv for lv in LEVELS
        if lv.modality == "CT" and lv.per == "study" and _matches(lv.match.descriptions, s["desc"])
        and (not lv.match.protocols or any(_matches(lv.match.protocols, e["protocol"]) for e in events))
        and (not lv.match.target_regions or any(_matches(lv.match.target_regions, e["region"]) for e in events))
        and _age_ok(lv, s["age"])
    ]  # fmt: skip


def _admin_levels(a):
    return [
        lv for lv in LEVELS
        if lv.modality in ("NM", "PT") and _matches(lv.match.agents, a["agent"])
        and _matches(lv.match.descriptions, a["desc"]) and _age_ok(lv, a["age"])
    ]  # fmt: skip


EVENT_VALUE = {"ctdivol_mgy": "ctdi", "dlp_mgycm": "dlp"}
ADMIN_VALUE = {"activity_mbq": "mbq", "activity_mbq_per_kg": "per_kg"}


def expected_outliers(
    data, keep=lambda study: True, *, factor=2.0, statuses=("official",), min_n=20
) -> set[tuple]:
    """The outliers computed in Python from the inserted rows: above `factor` x an applicable level of one of
    `statuses`, or above the 95th percentile of the protocol / agent within the kept studies when it has at least
    `min_n` values."""
    kept = {s["uid"] for s in data.studies if keep(s)}
    events = [e for e in data.events if e["uid"] in kept]
    admins = [a for a in data.admins if a["uid"] in kept]
    hits = set()
    for e in events:
        for lv in _event_levels(e):
            if lv.status in statuses and e[EVENT_VALUE[lv.quantity]] > factor * lv.value:
                hits.add(("reference_level", "ct_event", e["uid"], e["ordinal"], lv.quantity, lv.name))
    for s in data.studies:
        if s["uid"] in kept:
            for lv in _study_levels(data, s):
                if lv.status in statuses and s["dlp"] > factor * lv.value:
                    hits.add(("reference_level", "ct_study", s["uid"], None, lv.quantity, lv.name))
    for a in admins:
        for lv in _admin_levels(a):
            if lv.status in statuses and a[ADMIN_VALUE[lv.quantity]] > factor * lv.value:
                hits.add(("reference_level", "administration", a["uid"], 0, lv.quantity, lv.name))
    for protocol in {e["protocol"] for e in events}:
        group = [e for e in events if e["protocol"] == protocol]
        for quantity, key in EVENT_VALUE.items():
            if len(group) < min_n:
                continue
            p95 = pct([e[key] for e in group], 0.95)
            hits |= {
                ("p95", "ct_event", e["uid"], e["ordinal"], quantity, None) for e in group if e[key] > p95
            }
    for agent in {a["agent"] for a in admins}:
        group = [a for a in admins if a["agent"] == agent]
        for quantity, key in ADMIN_VALUE.items():
            if len(group) < min_n:
                continue
            p95 = pct([a[key] for a in group], 0.95)
            hits |= {("p95", "administration", a["uid"], 0, quantity, None) for a in group if a[key] > p95}
    return hits


def _hit(row) -> tuple:
    return (
        row["reason"],
        row["kind"],
        row["study_instance_uid"],
        row["ordinal"],
        row["quantity"],
        row["level_name"],
    )


def outlier_answer(data, **query) -> dict:
    resp = data.router.dispatch(
        Request("GET", "/api/dose/outliers", query={k: str(v) for k, v in query.items()})
    )
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


def test_outliers_are_the_values_above_factor_times_an_official_level_or_their_large_groups_p95(data):
    """Issue 19: every exam above a level (x 1), proposed levels like official ones and a p95 of groups of 3 made
    the list cover most studies. Now: above 2 x an official level, p95 only in groups of >= 20 values."""
    answer = outlier_answer(data, limit=100000)
    rows = answer["rows"]
    assert (answer["factor"], answer["p95_min_values"], answer["levels"]) == (2.0, 20, "official")
    assert {_hit(r) for r in rows} == expected_outliers(data) and len(rows) == len({_hit(r) for r in rows})
    assert answer["total"] == len(rows) == sum(answer["counts"].values())
    assert {r["reason"] for r in rows} == {"reference_level", "p95"}
    assert {r["level_status"] for r in rows if r["reason"] == "reference_level"} == {"official"}
    assert expected_outliers(data) != expected_outliers(
        data, factor=1.0, statuses=("official", "proposed", "example"), min_n=0
    )
    ratios = [r["ratio"] for r in rows]
    assert ratios == sorted(ratios, reverse=True) and min(ratios) > 1  # worst first, all above their level
    assert all(r["ratio"] > 2 for r in rows if r["reason"] == "reference_level")
    assert all(
        r["threshold"] == pytest.approx(2 * r["level"]) for r in rows if r["reason"] == "reference_level"
    )
    assert all(r["link"] == "ui/orthanc/study/" + urllib.parse.quote(r["study_instance_uid"]) for r in rows)
    event = next(r for r in rows if r["kind"] == "ct_event" and r["quantity"] == "ctdivol_mgy")
    source = next(
        e for e in data.events if e["uid"] == event["study_instance_uid"] and e["ordinal"] == event["ordinal"]
    )
    assert event["value"] == source["ctdi"]


def test_outliers_compare_with_proposed_and_example_levels_only_when_asked(data):
    every = ("official", "proposed", "example")
    rows = outlier_answer(data, levels="all", limit=100000)["rows"]
    assert {_hit(r) for r in rows} == expected_outliers(data, statuses=every)
    assert {r["level_status"] for r in rows if r["reason"] == "reference_level"} - {"official"}  # labelled
    chest = next(r for r in rows if r["level_name"] == "chest region event DLP")
    assert chest["level"] == 1200 and chest["level_status"] == "proposed" and chest["level_source"] == "test"


def test_outliers_are_paged_with_the_total_and_filtered_by_reason(data):
    full = outlier_answer(data, limit=100000)
    pages, offset = [], 0
    while True:
        page = outlier_answer(data, limit=7, offset=offset)
        assert page["total"] == full["total"] and page["count"] == len(page["rows"]) <= 7
        if not page["rows"]:
            break
        pages += page["rows"]
        offset += 7
    assert pages == full["rows"]
    for reason in ("reference_level", "p95"):
        only = outlier_answer(data, reason=reason, limit=3)
        assert only["total"] == full["counts"][reason] > 3 and len(only["rows"]) == 3
        assert {r["reason"] for r in only["rows"]} == {reason}
    past = outlier_answer(data, offset=10**6)
    assert past["rows"] == [] and past["total"] == full["total"]


def test_outlier_percentiles_are_computed_over_the_filtered_set(data):
    rows = api(data, "/api/dose/outliers", station="CT1", reason="p95")
    expected = {h for h in expected_outliers(data, lambda s: s["station"] == "CT1") if h[0] == "p95"}
    assert {_hit(r) for r in rows} == expected and expected
    assert expected != {h for h in expected_outliers(data) if h[0] == "p95"}  # the filter changed the p95


def test_box_statistics_and_applicable_levels_equal_a_direct_computation(data):
    def tukey(values):
        q1, q3 = pct(values, 0.25), pct(values, 0.75)
        lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        inside = [v for v in values if lo <= v <= hi]
        return q1, q3, min(inside), max(inside), len(values) - len(inside)

    for measure, key in (("ctdivol", "ctdi"), ("dlp", "dlp")):
        rows = {r["protocol"]: r for r in api(data, "/api/dose/box", measure=measure, group="protocol")}
        assert set(rows) == set(PROTOCOLS)
        for protocol, r in rows.items():
            group = [e for e in data.events if e["protocol"] == protocol]
            values = [e[key] for e in group]
            q1, q3, low, high, outside = tukey(values)
            assert (r["n"], r["min"], r["max"]) == (len(values), min(values), max(values))
            assert (r["q1"], r["median"], r["q3"]) == pytest.approx((q1, statistics.median(values), q3))
            assert (r["whisker_low"], r["whisker_high"], r["outside"]) == (low, high, outside)
            quantity = "ctdivol_mgy" if measure == "ctdivol" else "dlp_mgycm"
            names = {lv.name for e in group for lv in _event_levels(e) if lv.quantity == quantity}
            assert {lv["name"] for lv in r["levels"]} == names
    assert [lv["name"] for lv in rows_of(data, "dlp", "protocol", PROTOCOLS[1])] == ["chest region event DLP"]
    desc = {r["description"]: r for r in api(data, "/api/dose/box", measure="dlp", group="description")}
    chest = [s["dlp"] for s in data.studies if s["desc"] == "CT Chest"]
    assert desc["CT Chest"]["median"] == pytest.approx(statistics.median(chest))
    assert [lv["name"] for lv in desc["CT Chest"]["levels"]] == ["CT chest exam DLP"]
    assert desc["PET-CT WB"]["levels"] == []
    per_kg = {r["agent_code_meaning"]: r for r in api(data, "/api/dose/box", measure="per_kg", group="agent")}
    assert per_kg[AGENTS[1]]["levels"] == [
        {"name": "MDP per kg", "value": 4.0, "status": "example", "source": "test", "year": 2024}
    ]
    mbq = [a["mbq"] for a in data.admins if a["agent"] == AGENTS[0]]
    activity = {
        r["agent_code_meaning"]: r for r in api(data, "/api/dose/box", measure="activity", group="agent")
    }
    assert activity[AGENTS[0]]["q3"] == pytest.approx(pct(mbq, 0.75))
    assert [lv["name"] for lv in activity[AGENTS[0]]["levels"]] == ["FDG activity"]


def rows_of(data, measure, group, key):
    return next(r for r in api(data, "/api/dose/box", measure=measure, group=group) if r[group] == key)[
        "levels"
    ]


def test_effective_dose_per_description_with_the_coefficient_sources(data):
    rows = {r["description"]: r for r in api(data, "/api/dose/effective-dose")}
    for desc, r in rows.items():
        group = [s for s in data.studies if s["desc"] == desc]
        for part in ("ct", "nm", "total"):
            values = [s[f"{part}_e"] for s in group if s[f"{part}_e"] is not None]
            assert r[f"{part}_n"] == len(values)
            if values:
                assert r[f"{part}_median"] == pytest.approx(statistics.median(values))
                assert r[f"{part}_mean"] == pytest.approx(statistics.fmean(values))
            else:
                assert r[f"{part}_median"] is None
        bands = {age_band(s["age"]) is None for s in group if s["ct_e"] is not None}
        expected = {CT_K_SOURCE_ADULT} if bands == {True} else {CT_K_SOURCE_ADULT, CT_K_SOURCE_CHILD}
        assert set(r["ct_sources"]) == expected
        assert r["nm_sources"] == ([NM_E_SOURCE] if any(s["nm_e"] for s in group) else [])
    assert rows["PET-CT WB"]["nm_n"] > 0 and rows["CT Chest"]["nm_n"] == 0


def test_a_pet_ct_study_without_its_nm_part_has_no_total_and_stays_out_of_the_total_statistics(data):
    """Issue 19: a PET-CT study whose administration was not found had 'Total (CT + NM)' = the CT dose alone
    (dose/derived.py adds the parts it has), pulling the group's total below the NM part alone."""
    uid = "1.2.826.0.1.9000"
    with contextlib.closing(connect(data.cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
               ct_event_count, ct_total_dlp_mgycm, ct_effective_dose_msv, total_effective_dose_msv)
               VALUES (%s, '2024-03-01', 2024, 'PET-CT WB', 1, 100, 1.45, 1.45)""",
            (uid,),
        )
        cur.execute(
            """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
               acquisition_protocol, ctdivol_mgy, dlp_mgycm) VALUES (%s, '#0', 0, '2024-03-01', 2024, 'WB', 2, 100)""",
            (uid,),
        )
        conn.commit()
    try:
        rows = {r["description"]: r for r in api(data, "/api/dose/effective-dose")}
        pet = rows["PET-CT WB"]
        group = [s for s in data.studies if s["desc"] == "PET-CT WB"]
        totals = [s["total_e"] for s in group if s["total_e"] is not None]
        assert pet["studies"] == len(group) + 1 and pet["nm_missing_n"] == 1
        assert pet["total_n"] == len(totals) and pet["total_median"] == pytest.approx(
            statistics.median(totals)
        )
        assert pet["ct_n"] == len([s for s in group if s["ct_e"] is not None]) + 1  # the CT part still counts
        assert rows["CT Chest"]["nm_missing_n"] == 0
        study = api_one(data, f"/api/dose/study/{uid}")
        assert study["nm_part_missing"] is True and study["total_effective_dose_msv"] is None
        assert study["ct_effective_dose_msv"] == 1.45
        other = api_one(data, f"/api/dose/study/{group[0]['uid']}")
        assert other["nm_part_missing"] is False
    finally:
        with contextlib.closing(connect(data.cfg)) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM dose.study WHERE study_instance_uid = %s", (uid,))
            conn.commit()


def test_study_detail_shows_each_coefficient_with_its_source(data):
    adult = next(
        s for s in data.studies if s["ct_e"] is not None and age_band(s["age"]) is None and s["nm_e"]
    )
    s = api_one(data, f"/api/dose/study/{adult['uid']}")
    assert {e["k_source"] for e in s["ct_events"]} == {CT_K_SOURCE_ADULT}
    assert {e["k_msv_per_mgycm"] for e in s["ct_events"]} == {0.0145}
    admin = s["radiopharmaceuticals"][0]
    assert admin["coefficient_msv_per_mbq"] == 0.019 and admin["coefficient_note"] == f"fdg: {NM_E_SOURCE}"
    assert s["derived"]["sources"]["ct_k_adult"] == CT_K_SOURCE_ADULT
    child = next(x for x in data.studies if x["ct_e"] is not None and age_band(x["age"]) is not None)
    events = api_one(data, f"/api/dose/study/{child['uid']}")["ct_events"]
    assert {e["k_source"] for e in events} == {CT_K_SOURCE_CHILD}
    without = next(x for x in data.studies if x["ct_e"] is None)
    assert {e["k_source"] for e in api_one(data, f"/api/dose/study/{without['uid']}")["ct_events"]} == {None}


def test_age_and_weight_bands_filter_the_rows(data):
    rows = api(data, "/api/dose/ct-events", age_min=18, age_max=65, weight_min=60, weight_max=90)
    kept = {s["uid"] for s in data.studies
            if s["age"] is not None and 18 <= s["age"] < 65 and 60 <= s["weight"] < 90}  # fmt: skip
    assert len(rows) == sum(1 for e in data.events if e["uid"] in kept) > 0
    assert {r["study_instance_uid"] for r in rows} == kept & {e["uid"] for e in data.events}


def test_dead_letter_lists_open_failures_newest_first_with_counts(data):
    resp = data.router.dispatch(Request("GET", "/api/dose/dead-letter"))
    body = json.loads(resp.body)
    assert resp.status == 200 and (body["open"], body["resolved"], body["count"]) == (2, 1, 2)
    assert [r["file_path"] for r in body["rows"]] == ["/spool/a.dcm", XSS]
    assert [(r["error"], r["attempts"], r["source"]) for r in body["rows"]] == [
        ("parse error 0", 1, "orthanc"), ("parse error 2", 3, "orthanc")
    ]  # fmt: skip
    assert len(api(data, "/api/dose/dead-letter", state="all")) == 3
    assert [r["file_path"] for r in api(data, "/api/dose/dead-letter", state="resolved")] == ["/spool/b.dcm"]


def _cell_value(v):
    """A cell as the JSON API gives it: dates (and date-times) as text; numbers to 12 significant digits (Excel
    keeps 15). openpyxl reads a date back as a date-time at midnight (the fixture's times are never midnight)."""
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time() else str(v)
    return float(f"{v:.12g}") if isinstance(v, float) else v


def _sheet_rows(ws) -> list[dict]:
    rows = [[_cell_value(c.value) for c in r] for r in ws.iter_rows()]
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


@pytest.mark.parametrize(
    ("path", "group", "stats_path", "stats_key", "filters"),
    [
        (
            "/api/dose/ct-events",
            "acquisition_protocol",
            "/api/dose/ct-protocols",
            "protocol",
            {"station": "CT1"},
        ),
        ("/api/dose/activity-points", "agent", "/api/dose/activity", "agent", {"from": "2022-01-01"}),
    ],
)
def test_xlsx_export_has_one_sheet_per_group_equal_to_the_json_rows(
    data, path, group, stats_path, stats_key, filters
):
    from nmdose.web import xlsx

    rows = api(data, path, **filters)
    resp = api(data, path, **filters, format="xlsx")
    assert resp.content_type == xlsx.CONTENT_TYPE and ".xlsx" in resp.headers["Content-Disposition"]
    wb = openpyxl.load_workbook(io.BytesIO(resp.body))
    groups = list(dict.fromkeys(r[group] for r in rows))
    names = xlsx.sheet_names(groups)
    assert wb.sheetnames == ["Summary", *names.values()] and len(groups) >= 2
    for g in groups:
        expected = [
            {k: (str(v) if isinstance(v, dt.date) else v) for k, v in r.items()}
            for r in rows
            if r[group] == g
        ]
        assert _sheet_rows(wb[names[g]]) == [{k: _cell_value(v) for k, v in r.items()} for r in expected]
    if group == "acquisition_protocol":  # "Abdomen <script>alert(1)</script>" needed a sanitised name
        assert names[PROTOCOLS[2]] == "Abdomen <script>alert(1)<_scrip"  # 31 characters
    summary = [[c.value for c in r] for r in wb["Summary"].iter_rows()]
    ((key, value),) = filters.items()
    assert summary[3][:2] == [f"parameter {key}", value] and summary[2][:2] == ["rows", len(rows)]
    stats = api(data, stats_path, **filters)
    header = next(i for i, r in enumerate(summary) if r[0] == stats_key)
    table = [
        dict(zip(summary[header], r, strict=True)) for r in summary[header + 1 : header + 1 + len(stats)]
    ]
    assert [(t[stats_key], t["n"]) for t in table] == [(s[stats_key], s["n"]) for s in stats]


def store_synthetic_study(orthanc_url: str, study_uid: str, patient_id: str) -> str:
    """Store one minimal synthetic instance of `study_uid` in an Orthanc; returns Orthanc's study id."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = patient_id, "SYNTHETIC^WEB", "OT"
    ds.StudyDescription = "nmdose web test"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    req = urllib.request.Request(orthanc_url + "/instances", data=buf.getvalue(), method="POST")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["ParentStudy"]


def get_no_redirect(url: str) -> http.client.HTTPResponse:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", parts.path)
    resp = conn.getresponse()
    resp.body = resp.read()
    conn.close()
    return resp


def test_orthanc_link_redirects_to_the_study_in_orthanc_explorer_or_answers_404(stack):
    """The redirect computes Orthanc's ID from the census's PatientID (no call to Orthanc): it must be the ID
    Orthanc gave the stored study, and the link must open that study in Orthanc Explorer."""
    orthanc = stack.cfg.research_node.http_url.rstrip("/")
    uid = "1.2.826.0.1.3680043.10.1234.77"
    study_id = store_synthetic_study(orthanc, uid, "WEBTEST1")
    _stack_sql(
        stack,
        """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found, patient_id,
           is_target) VALUES (%s, 'simulationPACS', '2024-01-02', 'web test', '{OT}', 'WEBTEST1', false)""",
        (uid,),
    )
    try:
        url = f"{orthanc}/nmdose/ui/orthanc/study/{uid}"
        resp = get_no_redirect(url)
        location = resp.getheader("Location")
        assert resp.status == 302 and location == f"../../../../app/explorer.html#study?uuid={study_id}"
        assert resp.getheader("Cache-Control") == "no-store"
        target = urllib.parse.urljoin(url, location)
        assert target == f"{orthanc}/app/explorer.html#study?uuid={study_id}"
        with urllib.request.urlopen(target) as r:
            assert r.status == 200 and b"explorer" in r.read().lower()
        with urllib.request.urlopen(f"{orthanc}/studies/{study_id}") as r:
            assert json.loads(r.read())["MainDicomTags"]["StudyInstanceUID"] == uid
        missing = get_no_redirect(f"{orthanc}/nmdose/ui/orthanc/study/9.9.9.404")
        text = missing.body.decode()
        assert missing.status == 404 and missing.getheader("Content-Type").startswith("text/html")
        assert (
            "holds no study with StudyInstanceUID 9.9.9.404" in text
            and 'href="../../study/9.9.9.404"' in text
        )
        assert get_no_redirect(f"{orthanc}/nmdose/ui/orthanc/study/1.2.x").status == 400
        # Orthanc hands /nmdose/ui/ over as /ui too: both must end at the index page, following each relative
        # Location as a browser does (issue 19: the header alone was checked, and /ui/ looped to /ui/ui)
        for typed in ("/nmdose/ui", "/nmdose/ui/", "/nmdose/index"):
            url, hops = f"{orthanc}{typed}", 0
            resp = get_no_redirect(url)
            while resp.status == 302 and hops < 5:
                url, hops = urllib.parse.urljoin(url, resp.getheader("Location")), hops + 1
                resp = get_no_redirect(url)
            assert resp.status == 200 and url == f"{orthanc}/nmdose/ui/index", (typed, url, resp.status)
            assert b'data-page="index"' in resp.body
    finally:
        _stack_sql(stack, "DELETE FROM rpacs.study WHERE study_uid = %s", (uid,))
        urllib.request.urlopen(
            urllib.request.Request(f"{orthanc}/studies/{study_id}", method="DELETE")
        ).close()


def _stack_sql(stack, sql: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(connect(stack.cfg)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _queued(stack) -> tuple[int, int]:
    """Retrieve jobs and retrievals in the stack's database."""
    (jobs,) = _stack_sql(stack, "SELECT count(*) FROM jobs.queue WHERE kind = 'retrieve'")[0]
    (retrievals,) = _stack_sql(stack, "SELECT count(*) FROM rpacs.retrieval")[0]
    return jobs, retrievals


def test_a_cross_origin_or_non_json_post_to_the_real_plugin_is_refused_and_queues_nothing(stack):
    """What a page of another site can send without a CORS preflight (a text/plain or form POST) never reaches
    the retrieve route, in dev mode where any caller has every permission; malformed UIDs are refused too."""
    url = stack.cfg.research_node.http_url.rstrip("/") + "/nmdose/retrieve"
    body = json.dumps({"census": False, "studies": ["1.2.826.0.1.3680043.10.1234.88"]}).encode()
    before = _queued(stack)
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    status, answer = _post(url, body, evil)
    assert status == 403 and "cross-origin" in answer["error"]
    status, answer = _post(url, body, {"Content-Type": "text/plain"})  # no Origin: still not JSON
    assert status == 415 and "application/json" in answer["error"]
    status, _ = _post(url, body, {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"})
    assert status == 403
    status, _ = _post(url, body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415
    json_ = {"Content-Type": "application/json"}
    for bad in ({"census": False, "studies": "*"}, {"census": False, "studies": ["*"]},
                {"census": False, "studies": "1.2.3"}, {"census": False, "studies": []},
                {"census": False, "studies": ["1.2.3", "1.2.x"]}, {"census": "no"}, ["1.2.3"],
                {"census": False, "studies": ["1." + "2" * 70]}, {"census": False, "study": ["1.2"]}):  # fmt: skip
        status, answer = _post(url, json.dumps(bad).encode(), json_)
        assert status == 400 and answer["error"], bad
    assert _queued(stack) == before


def test_answers_through_orthanc_carry_the_security_headers_and_patient_data_is_not_cached(stack):
    base = stack.cfg.research_node.http_url.rstrip("/") + "/nmdose"
    for path in ("/api/research/failed", "/api/research/yearly?format=csv", "/api/dose/ct-events?format=xlsx",
                 "/ui/study/1.2.3", "/ui/dose", "/retrieve/studies"):  # fmt: skip
        with urllib.request.urlopen(base + path) as r:
            assert r.status == 200 and r.headers["Cache-Control"] == "no-store", path
            assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "connect-src" not in csp
    with urllib.request.urlopen(base + "/static/nmdose.js") as r:
        assert r.headers["Cache-Control"] == "no-cache" and r.headers["ETag"].startswith('"')
        tag, body = r.headers["ETag"], r.read()
    assert b"window.nmdose" in body
    # an unchanged script costs a 304 without a body; another ETag (an upgrade) gets the file again
    req = urllib.request.Request(base + "/static/nmdose.js", headers={"If-None-Match": tag})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 304 and e.value.read() == b""
    req = urllib.request.Request(base + "/static/nmdose.js", headers={"If-None-Match": '"older"'})
    with urllib.request.urlopen(req) as r:
        assert r.status == 200 and r.read() == body


# ----- the per-version answer cache (nmdose/web/cache.py) and the per-study mean CTDIvol kept by triggers


def _sql(data, sql: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(connect(data.cfg)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows


def test_the_study_mean_ctdivol_follows_its_events_and_ignores_events_without_one(data):
    uid = data.studies[0]["uid"]

    def mean():
        sql = "SELECT ct_mean_ctdivol_mgy FROM dose.study WHERE study_instance_uid = %s"
        return _sql(data, sql, (uid,))[0][0]

    mine = [e["ctdi"] for e in data.events if e["uid"] == uid]
    assert mean() == pytest.approx(statistics.fmean(mine))
    insert = """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, acquisition_protocol, ctdivol_mgy)
                VALUES (%s, %s, 90, 'probe', %s)"""
    try:
        _sql(data, insert, (uid, "probe-localizer", None))  # a localizer: no CTDIvol, not a zero
        assert mean() == pytest.approx(statistics.fmean(mine))
        _sql(data, insert, (uid, "probe-1", 1000.0))
        assert mean() == pytest.approx(statistics.fmean([*mine, 1000.0]))
        _sql(data, "UPDATE dose.ct_event SET ctdivol_mgy = 10 WHERE event_key = 'probe-1'")
        assert mean() == pytest.approx(statistics.fmean([*mine, 10.0]))
    finally:
        _sql(data, "DELETE FROM dose.ct_event WHERE event_key LIKE 'probe%%'")
    assert mean() == pytest.approx(statistics.fmean(mine))


def test_cached_answers_are_reused_until_a_dose_write_and_then_recomputed(data):
    def protocols():
        return {r["protocol"]: r["n"] for r in api(data, "/api/dose/ct-protocols", station="CT1")}

    first = protocols()
    (version,) = _sql(data, "SELECT dose.data_version()")[0]
    kept = _sql(data, "SELECT count(*) FROM dose.web_cache WHERE key LIKE 'ct_protocols:%%' AND data_version = %s",
                (version,))[0][0]  # fmt: skip
    assert kept >= 1
    # a hit answers what is stored: overwrite the stored body and the route answers it (then put it back)
    key = _sql(data, "SELECT key FROM dose.web_cache WHERE key LIKE 'ct_protocols:%%' AND data_version = %s"
                     " ORDER BY computed_at DESC LIMIT 1", (version,))[0][0]  # fmt: skip
    (body,) = _sql(data, "SELECT body FROM dose.web_cache WHERE key = %s", (key,))[0]
    _sql(
        data, "UPDATE dose.web_cache SET body = %s WHERE key = %s", ('[{"protocol": "stored", "n": 1}]', key)
    )
    assert protocols() == {"stored": 1}
    _sql(data, "UPDATE dose.web_cache SET body = %s WHERE key = %s", (body, key))
    assert protocols() == first
    ct1 = next(s for s in data.studies if s["station"] == "CT1")
    _sql(data, """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, acquisition_protocol,
                  ctdivol_mgy, dlp_mgycm, study_date) VALUES (%s, 'probe-cache', 91, 'Cache probe', 5, 50, %s)""",
         (ct1["uid"], ct1["date"]))  # fmt: skip
    try:
        assert _sql(data, "SELECT dose.data_version()")[0][0] > version
        assert protocols() == {**first, "Cache probe": 1}  # the write is seen at once
    finally:
        _sql(data, "DELETE FROM dose.ct_event WHERE event_key = 'probe-cache'")
    assert protocols() == first
    assert _sql(data, "SELECT count(*) FROM dose.web_cache WHERE key = %s AND data_version = %s",
                (key, version))[0][0] == 0  # fmt: skip # answers of older versions are purged


def test_an_answer_computed_while_a_dose_write_commits_is_returned_but_not_kept(data):
    from nmdose.web import cache

    key = cache.cache_key("probe", {"n": time.time()})

    def compute_while_writing():
        _sql(
            data,
            "UPDATE dose.study SET updated_at = now() WHERE study_instance_uid = %s",
            (data.studies[1]["uid"],),
        )
        return [{"x": 1}]

    with contextlib.closing(connect(data.cfg)) as conn:
        assert cache.cached_rows(conn, key, compute_while_writing) == [{"x": 1}]
        assert cache.cached_rows(conn, key, lambda: [{"x": 2}]) == [{"x": 2}]  # nothing was kept
        assert cache.cached_rows(conn, key, lambda: [{"x": 3}]) == [{"x": 2}]  # now it was


def test_a_cache_that_cannot_be_written_still_answers(data, caplog):
    from nmdose.web import cache

    key = cache.cache_key("probe-read-only", {"n": time.time()})
    with contextlib.closing(connect(data.cfg)) as conn:
        with conn.cursor() as cur:
            cur.execute("SET default_transaction_read_only = on")
        conn.commit()
        assert cache.cached_rows(conn, key, lambda: [{"x": 1}]) == [{"x": 1}]
    assert "web cache not writable" in caplog.text
    assert _sql(data, "SELECT count(*) FROM dose.web_cache WHERE key = %s", (key,))[0][0] == 0


def test_exports_are_computed_not_cached(data):
    before = _sql(data, "SELECT count(*) FROM dose.web_cache WHERE key LIKE 'ct_monthly:%%'")[0][0]
    api(data, "/api/dose/ct-monthly", format="csv", station="CT2")
    assert _sql(data, "SELECT count(*) FROM dose.web_cache WHERE key LIKE 'ct_monthly:%%'")[0][0] == before


def test_events_and_administrations_carry_their_study_fields_and_follow_its_changes(data):
    uid = next(s["uid"] for s in data.studies if s["desc"] == "PET-CT WB")
    cols = "study_description, patient_age_years, patient_sex, patient_weight_kg, manufacturer, model_name, station_name"

    def copies():
        rows = _sql(data, f"SELECT DISTINCT {cols} FROM dose.ct_event WHERE study_instance_uid = %s"
                          f" UNION SELECT DISTINCT {cols} FROM dose.radiopharmaceutical WHERE study_instance_uid = %s",
                    (uid, uid))  # fmt: skip
        (study,) = _sql(data, f"SELECT {cols} FROM dose.study WHERE study_instance_uid = %s", (uid,))
        return rows, study

    rows, study = copies()
    assert rows == [study] and study[0] == "PET-CT WB"
    before = study
    try:
        _sql(data, "UPDATE dose.study SET station_name = 'CT9', patient_weight_kg = 71.5 WHERE study_instance_uid = %s",
             (uid,))  # fmt: skip
        rows, study = copies()
        assert rows == [study] and study[4:] == (None, None, "CT9") and study[3] == 71.5
        # a writer cannot give an event other values than its study's
        _sql(
            data, "UPDATE dose.ct_event SET station_name = 'elsewhere' WHERE study_instance_uid = %s", (uid,)
        )
        assert copies()[0] == [study]
        n = sum(r["n"] for r in api(data, "/api/dose/ct-protocols", station="CT9"))
        assert n == sum(e["uid"] == uid for e in data.events)
    finally:
        _sql(data, "UPDATE dose.study SET station_name = %s, patient_weight_kg = %s WHERE study_instance_uid = %s",
             (before[6], before[3], uid))  # fmt: skip
    assert copies() == ([before], before)


def test_localizers_are_left_out_of_the_statistics_boxes_and_xlsx_sheets_but_kept_in_the_event_export(data):
    """Issue 19: 'Scout' and 'Topogram' rows with empty statistics in the tables and as the first sheets of the
    CT export. A localizer: acquisition type Constant Angle Acquisition (CID 10013), or no CTDIvol and no DLP."""
    uid = "1.2.826.0.1.9100"
    _sql(
        data,
        """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description, station_name)
           VALUES (%s, '2021-01-01', 2021, 'CT Chest', 'CT1')""",
        (uid,),
    )
    for n, (protocol, kind, ctdi, dlp) in enumerate(
        [("Scout", "Constant Angle Acquisition", None, None), ("Topogram", "Constant Angle Acquisition", 0.1, 1.5),
         ("Surview", None, None, None)]
    ):  # fmt: skip
        _sql(
            data,
            """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
               acquisition_protocol, acquisition_type, ctdivol_mgy, dlp_mgycm)
               VALUES (%s, %s, %s, '2021-01-01', 2021, %s, %s, %s, %s)""",
            (uid, f"#{n}", n, protocol, kind, ctdi, dlp),
        )
    localizers = {"Scout", "Topogram", "Surview"}
    try:
        assert {r["protocol"] for r in api(data, "/api/dose/ct-protocols")} == set(PROTOCOLS)
        for measure in ("ctdivol", "dlp"):
            assert {r["protocol"] for r in api(data, "/api/dose/box", measure=measure)} == set(PROTOCOLS)
        events = api(data, "/api/dose/ct-events", station="CT1")
        mine = {e["acquisition_protocol"]: e for e in events if e["study_instance_uid"] == uid}
        assert set(mine) == localizers and all(e["localizer"] for e in mine.values())
        assert mine["Topogram"]["acquisition_type"] == "Constant Angle Acquisition"
        assert not any(e["localizer"] for e in events if e["study_instance_uid"] != uid)
        text = api(data, "/api/dose/ct-events", station="CT1", format="csv").body.decode("utf-8-sig")
        assert "Topogram" in text and "Constant Angle Acquisition" in text
        wb = openpyxl.load_workbook(
            io.BytesIO(api(data, "/api/dose/ct-events", station="CT1", format="xlsx").body)
        )
        assert not localizers & set(wb.sheetnames) and wb.sheetnames[0] == "Summary"
        summary = [[c.value for c in r] for r in wb["Summary"].iter_rows()]
        assert ["parameter localizer_events_left_out", "3"] in [r[:2] for r in summary]
        assert not localizers & {r["group"] for r in api(data, "/api/dose/outliers", levels="all")}
    finally:
        _sql(data, "DELETE FROM dose.study WHERE study_instance_uid = %s", (uid,))


def test_monthly_dlp_is_the_median_per_study_per_month_and_description_over_every_month(data):
    """Issue 19: the monthly median pooled every protocol's events into one median, dropped empty months and
    counted localizers in n."""
    rows = api(data, "/api/dose/ct-monthly")
    studies = [s for s in data.studies if s["dlp"] is not None and s["dlp"] > 0]
    first = min(s["date"] for s in studies).replace(day=1)
    last = max(s["date"] for s in studies).replace(day=1)
    months, m = [], first
    while m <= last:
        months.append(m.strftime("%Y-%m"))
        m = (m + dt.timedelta(days=32)).replace(day=1)
    assert list(dict.fromkeys(r["month"] for r in rows)) == months
    groups: dict[tuple, list[float]] = {}
    for s in studies:
        groups.setdefault((s["date"].strftime("%Y-%m"), s["desc"]), []).append(s["dlp"])
    got = {(r["month"], r["description"]): r for r in rows if r["description"] is not None}
    assert set(got) == set(groups)
    for key, dlps in groups.items():
        assert got[key]["n"] == len(dlps) and got[key]["dlp_median"] == pytest.approx(statistics.median(dlps))
    empty = [r for r in rows if r["description"] is None]
    assert empty and all(r["n"] == 0 and r["dlp_median"] is None for r in empty)
    assert {r["month"] for r in empty} == set(months) - {k[0] for k in groups}


def test_text_filters_match_part_of_the_text_in_any_case_with_wildcards_literal(data):
    """Issue 19: 'chest', 'head', 'ct', 'fdg', 'pt' find what 'CT Chest', 'Head routine', 'CT1'/'CT2',
    `Fluorodeoxyglucose F^18^` and a PT series are; `%` and `_` are no wildcards."""
    head = api(data, "/api/dose/ct-protocols", protocol=PROTOCOLS[0])
    assert head and api(data, "/api/dose/ct-protocols", protocol="HEAD rout") == head
    chest = {s["uid"] for s in data.studies if s["desc"] == "CT Chest"}
    (row,) = api(data, "/api/dose/ct-protocols", group="description", description="chest")
    assert (row["description"], row["n"]) == ("CT Chest", len(chest))
    every = api(data, "/api/dose/ct-protocols", group="description")
    assert api(data, "/api/dose/ct-protocols", group="description", station="ct") == every
    assert api(data, "/api/dose/activity", agent="fdg") == api(data, "/api/dose/activity", agent=AGENTS[0])
    for wildcard in ("%", "_", "\\"):
        assert api(data, "/api/dose/ct-protocols", protocol=wildcard) == []
    with contextlib.closing(connect(data.cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO dose.series_protocol (study_instance_uid, series_instance_uid, modality)"
            " VALUES ('1.2.826.0.1.1', '1.2.826.0.1.1.1', 'PT'), ('1.2.826.0.1.2', '1.2.826.0.1.2.1', 'CT')"
        )
    try:
        (pet,) = api(data, "/api/dose/effective-dose", modality="pt")
        assert (pet["description"], pet["studies"]) == ("PET-CT WB", 1)
        assert api(data, "/api/dose/choices", field="modality") == [
            {"value": "CT", "n": 1}, {"value": "PT", "n": 1}
        ]  # fmt: skip
    finally:
        with contextlib.closing(connect(data.cfg)) as conn, conn, conn.cursor() as cur:
            cur.execute("DELETE FROM dose.series_protocol WHERE study_instance_uid LIKE '1.2.826.0.1.%'")


def test_choices_are_the_values_of_a_filter_with_their_counts_under_the_other_filters(data):
    protocols = api(data, "/api/dose/choices", field="protocol")
    counts = {p: sum(1 for e in data.events if e["protocol"] == p) for p in PROTOCOLS}
    assert {r["value"]: r["n"] for r in protocols} == counts
    assert [r["n"] for r in protocols] == sorted(counts.values(), reverse=True)
    # the field's own filter is left out, the others apply
    ct2 = [e for e in data.events if data.studies[int(e["uid"].rsplit(".", 1)[1])]["station"] == "CT2"]
    got = api(data, "/api/dose/choices", field="protocol", protocol="head", station="CT2")
    assert {r["value"]: r["n"] for r in got} == {
        p: n for p in PROTOCOLS if (n := sum(1 for e in ct2 if e["protocol"] == p))
    }
    descriptions = api(data, "/api/dose/choices", field="description")
    assert {r["value"] for r in descriptions} == {s["desc"] for s in data.studies}
    agents = api(data, "/api/dose/choices", field="agent")
    assert {(r["value"], r["agent_code_meaning"]) for r in agents} == {
        ("¹⁸F-FDG", AGENTS[0]), ("⁹⁹ᵐTc-MDP", AGENTS[1])
    }  # fmt: skip
    resp = data.router.dispatch(Request("GET", "/api/dose/choices", query={}))
    assert resp.status == 400 and b"field" in resp.body
    resp = data.router.dispatch(Request("GET", "/api/dose/choices", query={"field": "sex"}))
    assert resp.status == 400


def test_exports_are_named_by_their_filters_and_state_the_site_time(data, monkeypatch):
    """Issue 19: every export had the same file name whatever the filter, and its time in UTC."""
    monkeypatch.setenv("TZ", "Asia/Seoul")
    period = {"from": "2022-01-01", "to": "2022-12-31"}
    csv_resp = api(data, "/api/dose/ct-events", description="chest", format="csv", **period)
    assert csv_resp.headers["Content-Disposition"] == (
        'attachment; filename="ct-events_2022-01-01_2022-12-31_chest.csv"'
    )
    xlsx_resp = api(data, "/api/dose/activity-points", agent="¹⁸F-FDG", format="xlsx")
    assert xlsx_resp.headers["Content-Disposition"] == 'attachment; filename="activity-weight_18f-fdg.xlsx"'
    summary = openpyxl.load_workbook(io.BytesIO(xlsx_resp.body))["Summary"]
    cells = {r[0]: r[1] for r in summary.iter_rows(values_only=True) if r and r[0]}
    assert cells["exported"].endswith(" KST (UTC+09:00)") and "exported (UTC)" not in cells
