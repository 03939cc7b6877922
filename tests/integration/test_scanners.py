"""Scanners (issue 16 item 2, issue 19 "scanners side by side") against a real PostgreSQL: dose reports ingested
through the real ingest give one scanner per device whatever its upgrades and station renames; rename and merge
through the routes (config:write, audited); the dose page's scanner filter; the per-scanner statistics.
Every number is known from the reports the test writes."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import statistics
from types import SimpleNamespace

import pytest
from pydicom.uid import generate_uid

from nmdose.audit import routes as audit_routes
from nmdose.auth import KeycloakAuth
from nmdose.db import connect
from nmdose.dose.ingest import ingest_files
from nmdose.simulate import rdsr as R
from nmdose.web import pages
from nmdose.web.router import Request, Router
from tests.support import scratch_database
from tests.unit.test_auth import accounts, issuer, realm_server, token  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

FORCE = {"manufacturer": "SIEMENS", "model_name": "SOMATOM Force", "device_serial_number": "FC75412"}
CANON = {"manufacturer": "CANON_MEC", "model_name": "Aquilion ONE", "device_serial_number": "AQ1A9928"}
# the same model with another serial number took over the station name CTRAD1: a scanner of its own
REPLACEMENT = {"manufacturer": "SIEMENS", "model_name": "SOMATOM Force", "device_serial_number": "FC99999"}
NEW_UID = "1.2.826.0.1.3680043.8.498.777.1"  # the Force's Device Observer UID after its second upgrade

# (key, equipment, station, software, Device Observer UID or None (derived), date, protocol, CTDIvol)
STUDIES = [
    ("f1", FORCE, "CTRAD1", "syngo CT VB20A", None, "20220110", "Thorax 1.0 B31f", 10.0),
    (
        "f2",
        FORCE,
        "CT-ER1",
        "syngo CT VB30A",
        None,
        "20230601",
        "Thorax 1.0 B31f",
        12.0,
    ),  # renamed + upgraded
    (
        "f3",
        FORCE,
        "CT-ER1",
        "syngo CT VB40A",
        NEW_UID,
        "20230701",
        "Thorax 1.0 B31f",
        14.0,
    ),  # its UID changed
    ("c1", CANON, "CTRAD2", "V10.6", None, "20230201", "CHEST ROUTINE", 6.0),
    ("c2", CANON, "CTRAD2", "V10.6", None, "20230301", "CHEST ROUTINE", 8.0),
    ("r1", REPLACEMENT, "CTRAD1", "syngo CT VB30A", None, "20240105", "Thorax 1.0 B31f", 20.0),
]


def _write(folder, key, equipment, station, software, uid, date, protocol, ctdivol):
    info = R.DoseStudyInfo(
        study_instance_uid=generate_uid(), study_date=date, study_description="CT Chest", station_name=station,
        software_versions=software, device_observer_uid=uid, accession_number=key.upper(), **equipment,
    )  # fmt: skip
    event = R.CtAcquisition(acquisition_protocol=protocol, ctdivol_mgy=ctdivol, dlp_mgycm=ctdivol * 40)
    localizer = R.CtAcquisition(acquisition_protocol="Topogram", acquisition_type="constant_angle",
                                ctdivol_mgy=None, dlp_mgycm=None)  # fmt: skip
    ds = R.ct_radiation_dose_sr(info, [localizer, event], series_uid=generate_uid(), sop_uid=generate_uid())
    return info.study_instance_uid, R.save(ds, folder / f"{key}.dcm")


@pytest.fixture(scope="module")
def data(stack, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scanners")
    with scratch_database(stack.cfg, "scanners") as cfg:
        written = {s[0]: _write(folder, *s) for s in STUDIES}
        outcomes = ingest_files(cfg, [path for _uid, path in written.values()])
        assert {o["status"] for o in outcomes} == {"ingested"}
        router = Router()  # dev mode: every permission
        pages.register_routes(router, SimpleNamespace(cfg=cfg))
        yield SimpleNamespace(cfg=cfg, router=router, uids={k: v[0] for k, v in written.items()},
                              paths=[p for _u, p in written.values()])  # fmt: skip


def _sql(cfg, query, params=()):
    with contextlib.closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else None


def call(router, method, path, body=None, headers=None, **query):
    headers = {"content-type": "application/json", **(headers or {})}
    raw = json.dumps(body).encode() if body is not None else b""
    resp = router.dispatch(Request(method, path, query={k: str(v) for k, v in query.items()}, headers=headers,
                                   body=raw))  # fmt: skip
    return resp.status, json.loads(resp.body) if resp.content_type.startswith("application/json") else resp


def scanner_of(data, key):
    ((sid,),) = _sql(
        data.cfg, "SELECT scanner_id FROM dose.study WHERE study_instance_uid = %s", (data.uids[key],)
    )
    return sid


def test_an_upgrade_a_station_rename_and_a_new_uid_do_not_split_a_scanner(data):
    force, canon, replacement = scanner_of(data, "f1"), scanner_of(data, "c1"), scanner_of(data, "r1")
    assert scanner_of(data, "f2") == scanner_of(data, "f3") == force
    assert scanner_of(data, "c2") == canon
    assert len({force, canon, replacement}) == 3
    assert _sql(data.cfg, "SELECT count(*) FROM dose.scanner")[0][0] == 3
    status, body = call(data.router, "GET", "/api/scanners")
    assert status == 200
    rows = {r["scanner_id"]: r for r in body["rows"]}
    f = rows[force]
    assert (f["display_name"], f["studies"], f["group_studies"]) == ("SOMATOM Force (CTRAD1)", 3, 3)
    assert f["station_names"] == [
        {"name": "CTRAD1", "first": "2022-01-10", "last": "2022-01-10"},
        {"name": "CT-ER1", "first": "2023-06-01", "last": "2023-07-01"},
    ]
    assert [v["name"] for v in f["software_versions"]] == [
        "syngo CT VB20A",
        "syngo CT VB30A",
        "syngo CT VB40A",
    ]
    assert NEW_UID in f["device_observer_uids"] and len(f["device_observer_uids"]) == 2
    assert f["device_observer_uid"] != NEW_UID  # the first one seen stays
    assert (f["first_study"], f["last_study"]) == ("2022-01-10", "2023-07-01")
    assert (rows[replacement]["device_serial_number"], rows[replacement]["studies"]) == ("FC99999", 1)
    assert rows[canon]["names_seen"] == ["CTRAD2"]


def test_ingesting_the_same_reports_again_changes_nothing(data):
    before = _sql(
        data.cfg, "SELECT scanner_id, station_names, software_versions FROM dose.scanner ORDER BY 1"
    )
    outcomes = ingest_files(data.cfg, data.paths)
    assert {o["status"] for o in outcomes} == {"unchanged"}
    assert (
        _sql(data.cfg, "SELECT scanner_id, station_names, software_versions FROM dose.scanner ORDER BY 1")
        == before
    )


def _side(data, **query):
    status, body = call(data.router, "GET", "/api/scanners/side-by-side", **query)
    assert status == 200, body
    return {r["scanner"]: r for r in body["rows"]}


def test_side_by_side_statistics_per_scanner(data):
    status, body = call(
        data.router, "GET", "/api/scanners/side-by-side", measure="ctdivol", description="ct chest"
    )
    # two scanners share the default name until one is renamed: one row each, by id
    assert [r["scanner"] for r in body["rows"]] == [
        "Aquilion ONE (CTRAD2)", "SOMATOM Force (CTRAD1)", "SOMATOM Force (CTRAD1)"
    ]  # fmt: skip
    by_id = {r["scanner_id"]: r for r in body["rows"]}
    f = by_id[scanner_of(data, "f1")]
    assert (f["n"], f["median"], f["mean"], f["min"], f["max"]) == (3, 12.0, pytest.approx(12.0), 10.0, 14.0)
    c = by_id[scanner_of(data, "c1")]
    assert (c["n"], c["median"], c["q1"], c["q3"]) == (2, 7.0, 6.5, 7.5)
    assert by_id[scanner_of(data, "r1")]["n"] == 1
    dlp = {
        r["scanner_id"]: r
        for r in call(data.router, "GET", "/api/scanners/side-by-side", measure="dlp")[1]["rows"]
    }
    assert dlp[scanner_of(data, "c1")]["median"] == pytest.approx(280.0)
    # per study: the mean CTDIvol of its events (the localizer has none), its total DLP
    status, body = call(data.router, "GET", "/api/scanners/side-by-side", measure="dlp_study")
    per_study = {r["scanner_id"]: r for r in body["rows"]}
    f = per_study[scanner_of(data, "f1")]
    assert (f["n"], f["median"], f["max"]) == (3, pytest.approx(480.0), pytest.approx(560.0))
    status, body = call(
        data.router, "GET", "/api/scanners/side-by-side", measure="ctdivol_study", protocol="thorax"
    )
    assert [(r["scanner_id"], r["n"], r["mean"]) for r in body["rows"]] == [
        (scanner_of(data, "f1"), 3, pytest.approx(12.0)), (scanner_of(data, "r1"), 1, pytest.approx(20.0))
    ]  # fmt: skip
    # a protocol chooses the exam: the Canon's raw name
    status, body = call(
        data.router, "GET", "/api/scanners/side-by-side", measure="ctdivol", protocol="chest routine"
    )
    assert [r["scanner_id"] for r in body["rows"]] == [scanner_of(data, "c1")]
    status, body = call(data.router, "GET", "/api/scanners/side-by-side", measure="activity")
    assert (status, body["rows"]) == (200, [])
    status, body = call(data.router, "GET", "/api/scanners/side-by-side", measure="ctdivol", format="csv")
    assert status == 200 and body.body.decode().lstrip("\ufeff").startswith("scanner_id,scanner,")


def test_bad_input_is_refused_and_changes_nothing(data):
    before = _sql(data.cfg, "SELECT scanner_id, display_name, merged_into FROM dose.scanner ORDER BY 1")
    force = scanner_of(data, "f1")
    assert call(data.router, "GET", "/api/scanners/side-by-side")[0] == 400  # measure required
    assert call(data.router, "GET", "/api/scanners/side-by-side", measure="volume")[0] == 400
    assert call(data.router, "POST", f"/api/scanners/{force}/rename", {"display_name": "   "})[0] == 400
    assert call(data.router, "POST", f"/api/scanners/{force}/rename", {"display_name": "a\x07b"})[0] == 400
    assert call(data.router, "POST", f"/api/scanners/{force}/rename", {"display_name": "x" * 201})[0] == 400
    assert call(data.router, "POST", f"/api/scanners/{force}/rename", {"name": "x"})[0] == 400
    assert call(data.router, "POST", f"/api/scanners/{force}/rename", {"display_name": 5})[0] == 400
    assert call(data.router, "POST", "/api/scanners/abc/rename", {"display_name": "x"})[0] == 400
    assert call(data.router, "POST", "/api/scanners/0/rename", {"display_name": "x"})[0] == 400
    status, body = call(data.router, "POST", "/api/scanners/999999/rename", {"display_name": "x"})
    assert status == 404 and "999999" in body["error"]
    assert call(data.router, "POST", f"/api/scanners/{force}/merge", {"into": force})[0] == 400
    assert call(data.router, "POST", f"/api/scanners/{force}/merge", {"into": "2"})[0] == 400
    assert call(data.router, "POST", f"/api/scanners/{force}/merge", {})[0] == 400
    assert call(data.router, "POST", f"/api/scanners/{force}/merge", {"into": 999999})[0] == 404
    assert (
        _sql(data.cfg, "SELECT scanner_id, display_name, merged_into FROM dose.scanner ORDER BY 1") == before
    )


def test_rename_and_merge_change_the_statistics_and_the_filter(data):
    force, canon, replacement = scanner_of(data, "f1"), scanner_of(data, "c1"), scanner_of(data, "r1")
    status, body = call(
        data.router, "POST", f"/api/scanners/{force}/rename", {"display_name": "  CT ER  Force "}
    )
    assert (status, body) == (200, {"scanner_id": force, "display_name": "CT ER Force"})
    assert (
        call(data.router, "POST", f"/api/scanners/{replacement}/rename", {"display_name": "CT 1 new"})[0]
        == 200
    )
    got = _side(data, measure="ctdivol")
    assert sorted(got) == ["Aquilion ONE (CTRAD2)", "CT 1 new", "CT ER Force"]  # cached answers went
    # the dose page's filter: by id or display name (any case), events and studies alike
    status, body = call(data.router, "GET", "/api/dose/ct-events", scanner="ct er force")
    assert sorted(e["study_instance_uid"] for e in body["rows"] if e["ctdivol_mgy"]) == sorted(
        data.uids[k] for k in ("f1", "f2", "f3")
    )
    status, body = call(data.router, "GET", "/api/dose/ct-protocols", scanner=canon)
    assert [(r["protocol"], r["n"]) for r in body["rows"]] == [("CHEST ROUTINE", 2)]
    status, body = call(data.router, "GET", "/api/dose/ct-protocols", scanner=canon, group="description")
    assert [(r["description"], r["n"]) for r in body["rows"]] == [("CT Chest", 2)]
    assert call(data.router, "GET", "/api/dose/ct-events", scanner="no such scanner")[1]["rows"] == []
    # merge the replacement into the Force: its study counts there, under the Force's name
    status, body = call(data.router, "POST", f"/api/scanners/{replacement}/merge", {"into": force})
    assert (status, body) == (200, {"scanner_id": replacement, "merged_into": force})
    got = _side(data, measure="ctdivol")
    assert sorted(got) == ["Aquilion ONE (CTRAD2)", "CT ER Force"]
    assert (got["CT ER Force"]["n"], got["CT ER Force"]["median"]) == (4, statistics.median([10, 12, 14, 20]))
    status, body = call(data.router, "GET", "/api/dose/ct-events", scanner=force)
    assert len([e for e in body["rows"] if e["ctdivol_mgy"]]) == 4
    rows = {r["scanner_id"]: r for r in call(data.router, "GET", "/api/scanners")[1]["rows"]}
    assert (rows[force]["group_studies"], rows[replacement]["merged_into"]) == (4, force)
    assert rows[replacement]["merged_into_name"] == "CT ER Force" and rows[replacement]["group_studies"] == 0
    # the other way round would make a cycle: refused, nothing changed
    status, body = call(data.router, "POST", f"/api/scanners/{force}/merge", {"into": replacement})
    assert status == 409 and "merge the other way" in body["error"]
    # a chain is flattened: merging the Force into the Canon takes the replacement along
    assert call(data.router, "POST", f"/api/scanners/{force}/merge", {"into": canon})[0] == 200
    assert _sql(data.cfg, "SELECT scanner_id, merged_into FROM dose.scanner ORDER BY 1") == sorted(
        [(force, canon), (canon, None), (replacement, canon)]
    )
    assert _side(data, measure="ctdivol")["Aquilion ONE (CTRAD2)"]["n"] == 6
    # undo both
    for sid in (force, replacement):
        assert call(data.router, "POST", f"/api/scanners/{sid}/merge", {"into": None})[0] == 200
    assert _sql(data.cfg, "SELECT count(*) FROM dose.scanner WHERE merged_into IS NOT NULL")[0][0] == 0
    assert len(_side(data, measure="ctdivol")) == 3


def test_renaming_and_merging_need_config_write_and_are_audited(data, issuer):  # noqa: F811
    router = Router(KeycloakAuth(accounts(issuer)))
    pages.register_routes(router, SimpleNamespace(cfg=data.cfg))
    plugin = SimpleNamespace(router=router, cfg=data.cfg)
    assert audit_routes.install(plugin)
    canon = scanner_of(data, "c1")
    before = _sql(
        data.cfg, "SELECT display_name, merged_into FROM dose.scanner WHERE scanner_id = %s", (canon,)
    )

    def as_(roles, method, path, body=None, **query):
        headers = {"authorization": f"Bearer {token(issuer, roles=roles)}"}
        return call(router, method, path, body, headers, **query)[0]

    assert as_(["nmdose-technologist"], "POST", f"/api/scanners/{canon}/rename", {"display_name": "x"}) == 403
    assert as_(["nmdose-technologist"], "POST", f"/api/scanners/{canon}/merge", {"into": None}) == 403
    assert as_(["nmdose-technologist"], "GET", "/api/scanners") == 200  # dose:read lists them
    assert as_(["nmdose-technologist"], "GET", "/api/scanners", format="csv") == 403  # an export
    assert _sql(data.cfg, "SELECT display_name, merged_into FROM dose.scanner WHERE scanner_id = %s",
                (canon,)) == before  # fmt: skip
    assert as_(["nmdose-admin"], "POST", f"/api/scanners/{canon}/rename", {"display_name": "CT 2"}) == 200
    assert _sql(data.cfg, "SELECT display_name, renamed_by FROM dose.scanner WHERE scanner_id = %s",
                (canon,)) == [("CT 2", "kim")]  # fmt: skip
    assert plugin.audit_writer.flush(20)
    plugin.audit_writer.stop()
    got = _sql(
        data.cfg,
        """SELECT status, outcome, actor_username, permission FROM audit.event
                             WHERE action = '/api/scanners/{name}/rename' ORDER BY id""",
    )
    assert got == [(403, "denied", "kim", "config:write"), (200, "success", "kim", "config:write")]


def test_the_migrations_backfill_uses_the_keys_of_the_ingest(data, tmp_path):
    """Studies stored before sql/016 get scanners from its backfill (run here as the migrations run, as the
    owner): serial number, else station, under the same identity keys as nmdose.dose.scanners, so a later report
    of the same device finds the backfilled scanner."""
    from nmdose.dose.scanners import Equipment, identity_keys
    from tests.support import REPO

    text = (REPO / "sql" / "016_scanners.sql").read_text()
    backfill = text[text.index("CREATE TEMP TABLE scanner_backfill") : text.index("-- a rename or merge")]
    old = [
        ("1.2.826.0.1.3680043.8.498.16001", "OLD1", "OLD-SN-1"),
        ("1.2.826.0.1.3680043.8.498.16002", "OLD2", None),
    ]
    with contextlib.closing(connect(data.cfg, role="owner")) as conn, conn, conn.cursor() as cur:
        for uid, station, serial in old:
            cur.execute(
                """INSERT INTO dose.study (study_instance_uid, study_date, study_year, manufacturer, model_name,
                       station_name) VALUES (%s, '2019-05-01', 2019, ' Legacy Med ', 'Old CT', %s)""",
                (uid, station),
            )
            cur.execute(
                """INSERT INTO dose.object (sop_instance_uid, study_instance_uid, kind, status, file_sha256, parsed)
                   VALUES (%s, %s, 'ct_rdsr', 'ok', md5(%s), %s)""",
                (uid + ".1", uid, uid, json.dumps({"device_serial_number": serial})),
            )
        cur.execute(backfill)
        cur.execute(
            """SELECT s.station_name, sc.identity_key, sc.display_name, sc.station_names, sc.first_study_date
                 FROM dose.study s JOIN dose.scanner sc USING (scanner_id)
                WHERE s.study_instance_uid = ANY(%s) ORDER BY 1""",
            ([u for u, _s, _n in old],),
        )
        got = cur.fetchall()
    assert got == [
        ("OLD1", identity_keys(Equipment("Legacy Med", "Old CT", "OLD-SN-1", "OLD1"))[0], "Old CT (OLD1)",
         {"OLD1": {"first": "2019-05-01", "last": "2019-05-01"}}, dt.date(2019, 5, 1)),
        ("OLD2", identity_keys(Equipment("Legacy Med", "Old CT", None, "OLD2"))[0], "Old CT (OLD2)",
         {"OLD2": {"first": "2019-05-01", "last": "2019-05-01"}}, dt.date(2019, 5, 1)),
    ]  # fmt: skip
    # the device behind OLD1 reports again from a renamed station: the backfilled scanner, not a new one
    uid, path = _write(tmp_path, "o3", {"manufacturer": "LEGACY MED", "model_name": "Old CT",
                                        "device_serial_number": "OLD-SN-1"}, "OLD1-ER", "2.0", None, "20240101",
                       "Chest", 5.0)  # fmt: skip
    assert ingest_files(data.cfg, [path])[0]["status"] == "ingested"
    ((new, old_one),) = _sql(
        data.cfg,
        """SELECT (SELECT scanner_id FROM dose.study WHERE study_instance_uid = %s),
                  (SELECT scanner_id FROM dose.study WHERE study_instance_uid = %s)""",
        (uid, old[0][0]),
    )
    assert new == old_one
