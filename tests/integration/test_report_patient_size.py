"""The report's patient-size route (`/nmdose/api/dose/report/patient-size`, issue 19) against a real PostgreSQL:
the points are the inserted values (weight against CTDIvol, DLP and activity), the counts per group are the true
ones (also of the values without a weight, which are counted, never drawn), the sample is capped and
deterministic, and the reference levels that match a group come with it (MBq/kg and fixed MBq)."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
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
MDP = "Technetium Tc^99m^ medronate"
PATH = "/api/dose/report/patient-size"
LEVELS = [
    ReferenceLevel.model_validate(d)
    for d in (
        {"name": "FDG per kg", "modality": "PT", "match": {"agents": ["fluorodeoxy"]},
         "quantity": "activity_mbq_per_kg", "value": 3.5, "source": "test", "year": 2025, "status": "official"},
        {"name": "FDG fixed", "modality": "PT", "match": {"agents": ["FDG", "fluorodeoxy"]},
         "quantity": "activity_mbq", "value": 300, "source": "test", "year": 2025, "status": "proposed"},
        {"name": "bone per kg adults", "modality": "NM", "match": {"agents": ["medronate"]},
         "quantity": "activity_mbq_per_kg", "value": 8, "source": "test", "year": 2021, "status": "official",
         "age_band": {"min_years": 18}},
        {"name": "head CTDIvol", "modality": "CT", "match": {"protocols": ["^head"]},
         "quantity": "ctdivol_mgy", "value": 30, "source": "test", "year": 2024, "status": "official"},
        {"name": "chest exam DLP", "modality": "CT", "match": {"descriptions": ["^ct chest"]},
         "quantity": "dlp_mgycm", "value": 500, "source": "test", "year": 2024, "status": "official"},
    )
]  # fmt: skip


def weight_of(i: int) -> float | None:
    """Every 7th study has no weight; every 11th a weight of 0 (no weight either); the others 40 .. 106 kg."""
    if i % 7 == 3:
        return None
    if i % 11 == 5:
        return 0.0
    return 40.0 + (i * 13) % 67


@pytest.fixture(scope="module")
def data(stack):
    """40 CT studies (one head or chest event each, on stations CT1 / CT2), 24 FDG and 10 bone scans."""
    studies = []
    with scratch_database(stack.cfg, "size") as cfg:
        with contextlib.closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
            for i in range(74):
                uid = f"1.2.826.0.78.{i}"
                ct = i < 40
                s = {
                    "uid": uid,
                    "weight": weight_of(i),
                    "station": "CT1" if i % 3 else "CT2",
                    "desc": ("CT Head" if i % 2 == 0 else "CT Chest") if ct else "PET WB",
                    "protocol": ("Head routine" if i % 2 == 0 else "Chest routine") if ct else None,
                    "ctdi": 10.0 + i if ct else None,
                    "agent": None if ct else (FDG if i < 64 else MDP),
                    "activity": None if ct else 150.0 + 5 * i,
                }
                s["dlp"] = s["ctdi"] * 25 if ct else None
                studies.append(s)
                cur.execute(
                    """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
                           station_name, manufacturer, model_name, patient_age_years, patient_weight_kg,
                           ct_event_count, ct_total_dlp_mgycm, ct_mean_ctdivol_mgy)
                       VALUES (%s, '2024-05-02', 2024, %s, %s, 'Acme', 'X1', 50, %s, %s, %s, %s)""",
                    (uid, s["desc"], s["station"], s["weight"], 1 if ct else 0, s["dlp"], s["ctdi"]),
                )
                if ct:
                    cur.execute(
                        """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                               acquisition_protocol, ctdivol_mgy, dlp_mgycm)
                           VALUES (%s, '#0', 0, '2024-05-02', 2024, %s, %s, %s)""",
                        (uid, s["protocol"], s["ctdi"], s["dlp"]),
                    )
                else:
                    cur.execute(
                        """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal,
                               study_date, study_year, source, agent, activity_mbq)
                           VALUES (%s, '#0', 0, '2024-05-02', 2024, 'rrdsr', %s, %s)""",
                        (uid, s["agent"], s["activity"]),
                    )
        router = Router()
        cfg = dataclasses.replace(cfg, reference_levels=ReferenceLevelsFile(levels=LEVELS))
        pages.register_routes(router, SimpleNamespace(cfg=cfg))
        yield SimpleNamespace(router=router, studies=studies)


def get(data, status=200, **query):
    resp = data.router.dispatch(Request("GET", PATH, query={k: str(v) for k, v in query.items()}))
    assert resp.status == status, resp.body
    return resp if query.get("format") in ("csv", "xlsx") or status != 200 else json.loads(resp.body)


def has_weight(s) -> bool:
    return s["weight"] is not None and s["weight"] > 0


def test_points_and_counts_per_protocol_and_agent_are_the_inserted_values(data):
    got = get(data)
    assert got["group"] == "protocol" and got["limit"] == 300
    ct = {g["group"]: g for g in got["ct"]["groups"]}
    assert set(ct) == {"Head routine", "Chest routine"} and got["ct"]["groups_total"] == 2
    for name, g in ct.items():
        members = [s for s in data.studies if s["protocol"] == name]
        weighed = [s for s in members if has_weight(s)]
        assert (g["n"], g["with_weight"], g["no_weight"], g["shown"]) == (
            len(members),
            len(weighed),
            len(members) - len(weighed),
            len(weighed),
        )
        points = {(p["study_instance_uid"], p["weight_kg"], p["ctdivol_mgy"], p["dlp_mgycm"])
                  for p in got["rows"] if p["kind"] == "CT" and p["group"] == name}  # fmt: skip
        assert points == {(s["uid"], s["weight"], s["ctdi"], s["dlp"]) for s in weighed}
    assert got["ct"]["no_weight_studies"] == sum(
        1 for s in data.studies if s["protocol"] and not has_weight(s)
    )
    assert got["ct"]["no_weight_studies"] == 9  # 6 without a weight, 3 more with 0 kg: counted, not drawn

    nm = {g["group_code_meaning"]: g for g in got["nm"]["groups"]}
    assert set(nm) == {FDG, MDP} and nm[FDG]["group"] == "¹⁸F-FDG"
    for agent, g in nm.items():
        members = [s for s in data.studies if s["agent"] == agent]
        weighed = [s for s in members if has_weight(s)]
        assert (g["n"], g["with_weight"], g["shown"]) == (len(members), len(weighed), len(weighed))
        points = {(p["study_instance_uid"], p["weight_kg"], p["activity_mbq"])
                  for p in got["rows"] if p["kind"] == "NM" and p["group_code_meaning"] == agent}  # fmt: skip
        assert points == {(s["uid"], s["weight"], s["activity"]) for s in weighed}
    assert (
        got["nm"]["no_weight_studies"] == sum(1 for s in data.studies if s["agent"] and not has_weight(s)) > 0
    )
    assert got["count"] == len(got["rows"]) == sum(1 for s in data.studies if has_weight(s))


def test_the_levels_that_match_a_group_come_with_it(data):
    got = get(data)
    nm = {g["group_code_meaning"]: g for g in got["nm"]["groups"]}
    fdg = {lv["name"]: lv for lv in nm[FDG]["levels"]}
    assert set(fdg) == {"FDG per kg", "FDG fixed"}
    assert (fdg["FDG per kg"]["value"], fdg["FDG per kg"]["unit"], fdg["FDG per kg"]["conditional"]) == (
        3.5,
        "MBq/kg",
        False,
    )
    assert (fdg["FDG fixed"]["value"], fdg["FDG fixed"]["unit"], fdg["FDG fixed"]["status"]) == (
        300,
        "MBq",
        "proposed",
    )
    assert [lv["name"] for lv in nm[FDG]["levels"]] == ["FDG per kg", "FDG fixed"]  # official first
    bone = nm[MDP]["levels"]
    assert [(lv["name"], lv["value"], lv["conditional"], lv["age_min"]) for lv in bone] == [
        ("bone per kg adults", 8, True, 18)
    ]  # an age band: for part of the group only
    ct = {g["group"]: g for g in got["ct"]["groups"]}
    assert [(lv["name"], lv["quantity"], lv["unit"]) for lv in ct["Head routine"]["levels"]] == [
        ("head CTDIvol", "ctdivol_mgy", "mGy")
    ]
    assert ct["Chest routine"]["levels"] == []  # the DLP level is per study, matched by description
    per_study = get(data, group="description")
    desc = {g["group"]: g for g in per_study["ct"]["groups"]}
    assert [lv["name"] for lv in desc["CT Chest"]["levels"]] == ["chest exam DLP"]
    assert desc["CT Head"]["levels"] == []  # the head level is per event, not per examination


def test_the_sample_is_capped_deterministic_and_reports_the_true_n(data):
    small = get(data, limit=3, top=1)
    assert len(small["ct"]["groups"]) == 1 and small["ct"]["groups_total"] == 2
    (g,) = small["ct"]["groups"]
    assert g["group"] == "Chest routine"  # 20 each: the tie goes by name
    assert g["shown"] == 3 and g["n"] == 20 and g["with_weight"] > 3
    larger = get(data, limit=6, top=1)
    uids = {p["study_instance_uid"] for p in small["rows"] if p["kind"] == "CT"}
    assert len(uids) == 3 and uids < {p["study_instance_uid"] for p in larger["rows"] if p["kind"] == "CT"}
    assert [len(x["nm"]["groups"]) for x in (small, larger)] == [1, 1]
    assert small["nm"]["groups"][0]["group_code_meaning"] == FDG and small["nm"]["groups"][0]["shown"] == 3


def test_the_dose_filters_apply(data):
    got = get(data, station="CT2", weight_min=60)
    kept = [s for s in data.studies if s["station"] == "CT2" and has_weight(s) and s["weight"] >= 60]
    assert {p["study_instance_uid"] for p in got["rows"]} == {s["uid"] for s in kept}
    assert got["ct"]["no_weight_studies"] == 0  # a weight filter keeps only weighed studies
    fdg = get(data, agent="fdg")
    assert {g["group_code_meaning"] for g in fdg["nm"]["groups"]} == {FDG}


def test_exports_bad_input_and_permissions(data):
    resp = get(data, format="csv")
    rows = list(csv.DictReader(io.StringIO(resp.body.decode("utf-8-sig"))))
    assert len(rows) == sum(1 for s in data.studies if has_weight(s))
    assert "report-patient-size-protocol" in resp.headers["Content-Disposition"]
    book = openpyxl.load_workbook(io.BytesIO(get(data, format="xlsx").body))
    sheets = {name: list(book[name].iter_rows(values_only=True)) for name in book.sheetnames}
    assert len(sheets["Head routine"]) == 1 + sum(1 for s in data.studies if s["protocol"] == "Head routine"
                                                 and has_weight(s))  # fmt: skip
    summary = [str(c) for row in sheets["Summary"] for c in row if c is not None]
    assert any("FDG per kg: 3.5 MBq/kg" in c for c in summary)
    for query in ({"group": "agent"}, {"limit": "0"}, {"top": "99"}, {"weight_min": "-1"}, {"nonsense": "1"}):
        resp = get(data, 400, **query)
        assert json.loads(resp.body)["error"]
    route = {r.pattern: r for r in pages.ROUTES}[PATH]
    assert (route.permission, route.export_permission) == ("dose:read", "dose:export")
