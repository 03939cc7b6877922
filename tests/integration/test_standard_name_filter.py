"""The `standard_name` dose filter (docs/standard_names.md "Filtering by standard name") against a real PostgreSQL:
rules imported through the API name the rows; each dose route then answers exactly the rows with that name (a CT
event or an administration its own name, a study its own or any of its events' or administrations'), compared
with the rows the database holds; any case; an unknown name is an empty answer, not an error; a filtered answer is
never the cached unfiltered one."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from types import SimpleNamespace

import pytest

from nmdose.config import OutlierRules, ReferenceLevel, ReferenceLevelsFile
from nmdose.db import connect
from nmdose.web import pages
from nmdose.web.router import Request, Router
from tests.support import scratch_database

pytestmark = pytest.mark.integration

RULES_YAML = """\
standard_names:
  - standard_name: CT Chest
    field: study_description
    raw_values: [CT Chest]
  - standard_name: CT Abdomen
    field: study_description
    raw_values: [Abdomen CT]
  - standard_name: PET-CT WB
    field: study_description
    raw_values: [PET-CT WB]
  - standard_name: Chest helical
    field: acquisition_protocol
    raw_values: [Thorax helical]
  - standard_name: FDG PET
    field: agent
    raw_values: [Fluorodeoxyglucose]
"""

# uid -> (description, [(protocol, CTDIvol, DLP)], agent or None); a protocol without CTDIvol and DLP is a
# localizer (no statistics row of its own)
STUDIES = {
    "1.2.826.0.78.1": ("CT Chest", [("Thorax helical", 10.0, 400.0), ("Topogram", None, None)], None),
    "1.2.826.0.78.2": ("CT Chest", [("Chest routine", 20.0, 600.0)], None),
    "1.2.826.0.78.3": ("CT Chest", [("Thorax helical", 30.0, 800.0)], None),
    "1.2.826.0.78.4": ("Abdomen CT", [("Abd routine", 12.0, 500.0)], None),
    "1.2.826.0.78.5": ("PET-CT WB", [("CT AC", 3.0, 150.0)], "Fluorodeoxyglucose"),
    # no agent rule: the administration is named after its study
    "1.2.826.0.78.6": ("PET-CT WB", [], "Other agent"),
    "1.2.826.0.78.7": ("unknown thing", [("x", 5.0, 100.0)], None),  # no name at all
}
NAMES = ("CT Chest", "CT Abdomen", "PET-CT WB", "Chest helical", "FDG PET")

# Everything above 1 × a tiny level is an outlier, so the outlier list holds every measured row.
LEVELS = ReferenceLevelsFile(
    levels=[
        ReferenceLevel(name="any CT event", modality="CT", match={"descriptions": ["."]}, quantity="ctdivol_mgy",
                       per="event", value=1, source="test level", year=2024, status="official"),
        ReferenceLevel(name="any CT study", modality="CT", match={"descriptions": ["."]}, quantity="dlp_mgycm",
                       per="study", value=1, source="test level", year=2024, status="official"),
        ReferenceLevel(name="any administration", modality="PT", match={"descriptions": ["."]},
                       quantity="activity_mbq", per="administration", value=1, source="test level", year=2024,
                       status="official"),
    ],
    outliers=OutlierRules(factor=1.0),
)  # fmt: skip


def insert_study(cur, uid, desc, events, agent, date=dt.date(2024, 5, 1)):
    dlps = [e[2] for e in events if e[2] is not None]
    cur.execute(
        """INSERT INTO dose.study (study_instance_uid, study_date, study_year, study_description,
               ct_event_count, ct_total_dlp_mgycm, patient_weight_kg) VALUES (%s, %s, %s, %s, %s, %s, 70)""",
        (uid, date, date.year, desc, len(events), sum(dlps) if dlps else None),
    )
    for i, (protocol, ctdivol, dlp) in enumerate(events):
        cur.execute(
            """INSERT INTO dose.ct_event (study_instance_uid, event_key, ordinal, study_date, study_year,
                   study_description, acquisition_protocol, ctdivol_mgy, dlp_mgycm)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (uid, f"#{i}", i, date, date.year, desc, protocol, ctdivol, dlp),
        )
    if agent:
        cur.execute(
            """INSERT INTO dose.radiopharmaceutical (study_instance_uid, administration_key, ordinal, source,
                   agent, activity_mbq, study_date, study_year, study_description, patient_weight_kg)
               VALUES (%s, '#0', 0, 'rrdsr', %s, 300, %s, %s, %s, 70)""",
            (uid, agent, date, date.year, desc),
        )


def call(router, path, **query):
    resp = router.dispatch(
        Request("GET", path, query={k: str(v) for k, v in query.items()}, headers={}, body=b"")
    )
    return resp.status, json.loads(resp.body)


@pytest.fixture(scope="module")
def data(stack):
    with scratch_database(stack.cfg, "snfilter") as cfg:
        with contextlib.closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
            for uid, (desc, events, agent) in STUDIES.items():
                insert_study(cur, uid, desc, events, agent)
        cfg = dataclasses.replace(cfg, reference_levels=LEVELS)
        router = Router()
        pages.register_routes(router, SimpleNamespace(cfg=cfg))
        body = json.dumps({"format": "yaml", "text": RULES_YAML}).encode()
        resp = router.dispatch(
            Request(
                "POST", "/api/names/import", query={}, headers={"content-type": "application/json"}, body=body
            )
        )
        assert resp.status == 200, resp.body
        yield SimpleNamespace(cfg=cfg, router=router)


def db(cfg, query, *params):
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


# The rows a name selects, read from the database (the names the import gave).
def events_named(cfg, name):  # measured (non-localizer) CT events with this name of their own
    return {
        (uid, ordinal)
        for uid, ordinal in db(
            cfg,
            """SELECT study_instance_uid, ordinal FROM dose.ct_event
                WHERE standard_name = %s AND (ctdivol_mgy IS NOT NULL OR dlp_mgycm IS NOT NULL)""",
            name,
        )
    }


def studies_named(cfg, name):  # CT studies whose own name, or any event's or administration's, is this one
    return {
        uid
        for (uid,) in db(
            cfg,
            """SELECT s.study_instance_uid FROM dose.study s WHERE s.ct_event_count > 0 AND (s.standard_name = %s
                   OR EXISTS (SELECT 1 FROM dose.ct_event e
                               WHERE e.study_instance_uid = s.study_instance_uid AND e.standard_name = %s)
                   OR EXISTS (SELECT 1 FROM dose.radiopharmaceutical a
                               WHERE a.study_instance_uid = s.study_instance_uid AND a.standard_name = %s))""",
            name,
            name,
            name,
        )
    }


def administrations_named(cfg, name):
    return {
        uid for (uid,) in db(cfg, "SELECT study_instance_uid FROM dose.radiopharmaceutical WHERE standard_name = %s",
                             name)
    }  # fmt: skip


def test_the_import_named_the_rows_as_the_filter_tests_expect(data):
    """The premise of the tests below: an event named by its protocol's rule beside its study's other name, an
    administration named by its agent's rule, one by its study's."""
    assert events_named(data.cfg, "Chest helical") == {("1.2.826.0.78.1", 0), ("1.2.826.0.78.3", 0)}
    assert events_named(data.cfg, "CT Chest") == {("1.2.826.0.78.2", 0)}  # study 1's topogram is a localizer
    assert studies_named(data.cfg, "Chest helical") == {"1.2.826.0.78.1", "1.2.826.0.78.3"}
    assert studies_named(data.cfg, "FDG PET") == {"1.2.826.0.78.5"}
    assert administrations_named(data.cfg, "FDG PET") == {"1.2.826.0.78.5"}
    assert administrations_named(data.cfg, "PET-CT WB") == {"1.2.826.0.78.6"}


def test_ct_protocols_per_event_and_per_study_answer_exactly_the_named_rows(data):
    # the unfiltered answers first: cached per data version; a filtered one must not be served from them
    status, everything = call(data.router, "/api/dose/ct-protocols", group="protocol")
    assert status == 200 and sum(r["n"] for r in everything["rows"]) == 6
    for name in NAMES:
        status, body = call(data.router, "/api/dose/ct-protocols", group="protocol", standard_name=name)
        assert status == 200, body
        want = events_named(data.cfg, name)
        assert sum(r["n"] for r in body["rows"]) == len(want), name
        status, body = call(data.router, "/api/dose/ct-protocols", group="description", standard_name=name)
        assert status == 200, body
        assert sum(r["n"] for r in body["rows"]) == len(studies_named(data.cfg, name)), name
    status, body = call(
        data.router, "/api/dose/ct-protocols", group="protocol", standard_name="Chest helical"
    )
    assert [(r["protocol"], r["n"]) for r in body["rows"]] == [("Thorax helical", 2)]
    # per study: the studies holding a helical event, under their own (study) name
    status, body = call(
        data.router, "/api/dose/ct-protocols", group="standard_name", standard_name="Chest helical"
    )
    assert [(r["standard_name"], r["n"]) for r in body["rows"]] == [("CT Chest", 2)]
    # a PET-CT study is found by its administration's name; its CT part is what the CT statistics show
    status, body = call(data.router, "/api/dose/ct-protocols", group="description", standard_name="FDG PET")
    assert [(r["description"], r["n"]) for r in body["rows"]] == [("PET-CT WB", 1)]


def test_box_activity_and_the_exports_answer_exactly_the_named_rows(data):
    for name in NAMES:
        status, body = call(
            data.router, "/api/dose/box", measure="ctdivol", group="protocol", standard_name=name
        )
        assert status == 200, body
        assert sum(r["n"] for r in body["rows"]) == len(events_named(data.cfg, name)), name
        status, body = call(
            data.router, "/api/dose/box", measure="dlp", group="description", standard_name=name
        )
        assert sum(r["n"] for r in body["rows"]) == len(studies_named(data.cfg, name)), name
        status, body = call(data.router, "/api/dose/activity", standard_name=name)
        assert status == 200, body
        assert sum(r["n"] for r in body["rows"]) == len(administrations_named(data.cfg, name)), name
        status, body = call(data.router, "/api/dose/activity-points", standard_name=name)
        assert {r["study_instance_uid"] for r in body["rows"]} == administrations_named(data.cfg, name), name
        status, body = call(data.router, "/api/dose/ct-events", standard_name=name)
        assert status == 200, body
        got = {(r["study_instance_uid"], r["ordinal"]) for r in body["rows"]}
        with_localizers = set(db(data.cfg, "SELECT study_instance_uid, ordinal FROM dose.ct_event "
                                           "WHERE standard_name = %s", name))  # fmt: skip
        assert got == with_localizers, name
    # an administration named after its study (no agent rule) is not one of the FDG ones
    status, body = call(data.router, "/api/dose/activity", standard_name="PET-CT WB")
    assert [(r["agent"], r["n"]) for r in body["rows"]] == [("Other agent", 1)]


def test_outliers_are_those_of_the_named_rows(data):
    status, everything = call(data.router, "/api/dose/outliers", limit=1000)
    assert status == 200 and everything["total"] == 6 + 6 + 2  # measured events, CT studies, administrations
    for name in NAMES:
        status, body = call(data.router, "/api/dose/outliers", limit=1000, standard_name=name)
        assert status == 200, body
        got = {(r["kind"], r["study_instance_uid"]) for r in body["rows"]}
        want = (
            {("ct_event", uid) for uid, _ in events_named(data.cfg, name)}
            | {("ct_study", uid) for uid in studies_named(data.cfg, name)}
            | {("administration", uid) for uid in administrations_named(data.cfg, name)}
        )
        assert got == want, name
        assert body["total"] == len(body["rows"]), name


def test_any_case_matches_the_whole_name_and_an_unknown_name_is_empty(data):
    status, exact = call(data.router, "/api/dose/ct-events", standard_name="Chest helical")
    assert status == 200 and len(exact["rows"]) == 2
    for spelled in ("chest helical", "CHEST HELICAL", "cHeSt HeLiCaL"):
        status, body = call(data.router, "/api/dose/ct-events", standard_name=spelled)
        assert (status, body["rows"]) == (200, exact["rows"]), spelled
    status, body = call(
        data.router, "/api/dose/box", measure="dlp", group="standard_name", standard_name="ct chest"
    )
    assert [(r["standard_name"], r["n"]) for r in body["rows"]] == [("CT Chest", 3)]
    # the whole name: a part of it is no name (unlike the text filters, which match part of the text)
    for unknown in ("Chest", "CT Ches", "no such name", "%", "CT Chest%"):
        for path, extra in (
            ("/api/dose/ct-protocols", {}),
            ("/api/dose/box", {"measure": "dlp"}),
            ("/api/dose/activity", {}),
            ("/api/dose/ct-events", {}),
            ("/api/dose/outliers", {}),
        ):
            status, body = call(data.router, path, standard_name=unknown, **extra)
            assert (status, body["rows"]) == (200, []), (path, unknown)
    # too long a name is a clear 400, like every text filter
    status, body = call(data.router, "/api/dose/ct-protocols", standard_name="x" * 257)
    assert status == 400 and "standard_name" in body["error"]
