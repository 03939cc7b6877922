"""Research projects (issue 17 item 2) against a real PostgreSQL and the research Orthanc of the test stack:
adding studies by UID, CSV and census filter (idempotent), access per project in keycloak mode with real signed
tokens (403 for a user of another project, a list of one's own projects), the audit rows of views and downloads,
an uploaded ZIP with a broken file (the good ones stored, the broken one reported) and the ZIP download of the
stored study. Every number is known from the rows and files the test makes."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import time
import zipfile
from types import SimpleNamespace

import pytest
from pydicom import dcmread

from nmdose.audit import routes as audit_routes
from nmdose.auth import KeycloakAuth
from nmdose.db import connect
from nmdose.web import pages
from nmdose.web.router import Request, Router
from tests.support import scratch_database
from tests.unit.test_auth import accounts, issuer, realm_server, token  # noqa: F401 (fixtures)
from tests.unit.test_projects import dicom_bytes, zip_of

pytestmark = pytest.mark.integration

# census rows: uid, date, description, accession number
CENSUS = [
    ("1.2.826.0.17.1", dt.date(2023, 3, 1), "PET-CT WB FDG", "ACC1"),
    ("1.2.826.0.17.2", dt.date(2024, 5, 2), "PET-CT WB FDG", "ACC2"),
    ("1.2.826.0.17.3", dt.date(2024, 6, 3), "CT Chest", "12345"),
    ("1.2.826.0.17.4", dt.date(2024, 7, 4), "NM Bone", "ACC4"),
]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def data(stack):
    with scratch_database(stack.cfg, "projects") as cfg:
        with contextlib.closing(connect(cfg)) as conn, conn, conn.cursor() as cur:
            for uid, date, desc, acc in CENSUS:
                cur.execute(
                    """INSERT INTO rpacs.study (study_uid, source_node, study_date, description, modalities_found,
                           accession_number, patient_id, series_count, instance_count)
                       VALUES (%s, 'simulationPACS', %s, %s, '{PT,CT}', %s, 'P1', 3, 120)""",
                    (uid, date, desc, acc),
                )
            cur.execute(
                "INSERT INTO dose.study (study_instance_uid, study_date, study_description) VALUES (%s, %s, %s)",
                (CENSUS[0][0], CENSUS[0][1], CENSUS[0][2]),
            )
        router = Router()  # no authenticator: the local administrator
        pages.register_routes(router, SimpleNamespace(cfg=cfg))
        yield SimpleNamespace(cfg=cfg, router=router)


def call(router, method, path, body=None, headers=None, **query):
    h = dict(headers or {})
    raw = b""
    if body is not None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    elif method != "GET":
        h.setdefault("Content-Type", "application/json")
    resp = router.dispatch(
        Request(method, path, query={k: str(v) for k, v in query.items()}, headers=h, body=raw)
    )
    if resp.content_type.startswith("application/json"):
        return resp.status, json.loads(resp.body)
    return resp.status, resp


def sql(cfg, text, params=()):
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(text, params)
        return cur.fetchall()


def test_studies_are_added_by_uid_csv_and_census_filter_once_each(data):
    r = data.router
    status, body = call(r, "POST", "/api/projects", {"name": "lung", "description": "Lung PET study"})
    assert status == 201 and body["created"] is True and body["project"]["studies"] == 0
    status, body = call(r, "POST", "/api/projects", {"name": "lung", "description": "other"})
    assert status == 200 and body["created"] is False and body["project"]["description"] == "Lung PET study"
    assert call(r, "POST", "/api/projects", {"name": "Lung!"})[0] == 400

    status, body = call(r, "POST", "/api/projects/lung/studies", {"uids": [CENSUS[0][0], "1.2.826.0.17.99"]})
    assert status == 200 and (body["added"], body["already"]) == (2, 0)
    assert body["not_in_census"] == ["1.2.826.0.17.99"]
    status, body = call(r, "POST", "/api/projects/lung/studies", {"uids": [CENSUS[0][0]]})
    assert (status, body["added"], body["already"]) == (200, 0, 1)  # re-adding is a no-op
    csv = "AccessionNumber,Note\n12345,x\nACC2,y\nNOPE,z\n"
    status, body = call(r, "POST", "/api/projects/lung/studies", {"csv": csv})
    assert status == 200 and body["added"] == 2 and body["unknown_accessions"] == ["NOPE"]
    status, body = call(r, "POST", "/api/projects/lung/studies", {"description": "pet-ct", "year": 2024})
    assert (status, body["added"], body["already"]) == (200, 0, 1)  # ACC2's study, added by the CSV already
    status, body = call(r, "POST", "/api/projects/lung/studies", {"description": "bone", "state": "done"})
    assert (status, body["added"], body["study_instance_uids"]) == (200, 0, [])  # not retrieved: none
    status, body = call(r, "POST", "/api/projects/lung/studies", {"description": "bone"})
    assert (status, body["added"]) == (200, 1)

    got = sql(
        data.cfg, "SELECT study_instance_uid, how FROM rpacs.project_study WHERE project = 'lung' ORDER BY 1"
    )
    assert got == [(CENSUS[0][0], "uid"), (CENSUS[1][0], "csv"), (CENSUS[2][0], "csv"),
                   (CENSUS[3][0], "description"), ("1.2.826.0.17.99", "uid")]  # fmt: skip

    status, body = call(r, "GET", "/api/projects/lung")
    assert status == 200 and body["count"] == 5 and body["write"] is True
    first = body["rows"][0]  # newest first; the UID outside the census last (no date)
    assert first["study_instance_uid"] == CENSUS[3][0] and first["modalities"] == "PT/CT"
    assert (first["series_count"], first["instance_count"], first["dose_record"]) == (3, 120, False)
    by_uid = {row["study_instance_uid"]: row for row in body["rows"]}
    assert by_uid[CENSUS[0][0]]["dose_record"] is True and by_uid["1.2.826.0.17.99"]["in_census"] is False

    # bad input: refused, nothing changed
    for bad in ({"uids": ["1.2", "x"]}, {"uids": ["1.2"], "csv": "1.3"}, {}, {"accessions": "ACC1"},
                {"description": "ct", "year": 1800}, {"uids": ["1.2"], "year": 2024}):  # fmt: skip
        assert call(r, "POST", "/api/projects/lung/studies", bad)[0] == 400, bad
    assert call(r, "POST", "/api/projects/nope/studies", {"uids": ["1.2.3"]})[0] == 404
    assert sql(data.cfg, "SELECT count(*) FROM rpacs.project_study")[0][0] == 5

    status, body = call(r, "DELETE", "/api/projects/lung/studies/1.2.826.0.17.99")
    assert status == 200 and body["removed"] is True
    assert call(r, "DELETE", "/api/projects/lung/studies/1.2.826.0.17.99")[0] == 404
    assert call(r, "GET", "/api/projects/lung")[1]["count"] == 4


def test_access_per_project_with_real_tokens_and_the_audit_trail(data, issuer):  # noqa: F811
    call(data.router, "POST", "/api/projects", {"name": "heart"})
    call(data.router, "POST", "/api/projects", {"name": "lung"})
    call(data.router, "POST", "/api/projects/heart/studies", {"uids": [CENSUS[2][0]]})
    router = Router(KeycloakAuth(accounts(issuer)))
    pages.register_routes(router, SimpleNamespace(cfg=data.cfg))
    plugin = SimpleNamespace(router=router, cfg=data.cfg)
    assert audit_routes.install(plugin)

    def as_(roles=(), groups=None, name="kim"):
        return {
            "authorization": f"Bearer {token(issuer, roles=roles, groups=groups, preferred_username=name)}"
        }

    lung_reader = as_(["project:lung:read"])
    heart_writer = as_(groups=["/projects/heart/write"], name="park")
    admin = as_(["nmdose-admin"], name="boss")

    status, body = call(router, "GET", "/api/projects", headers=lung_reader)
    assert (
        status == 200
        and [p["name"] for p in body["rows"]] == ["lung"]
        and body["rows"][0]["access"] == "read"
    )
    status, body = call(router, "GET", "/api/projects", headers=heart_writer)
    assert [(p["name"], p["access"]) for p in body["rows"]] == [("heart", "write")]
    assert [p["name"] for p in call(router, "GET", "/api/projects", headers=admin)[1]["rows"]] == [
        "heart",
        "lung",
    ]

    status, body = call(router, "GET", "/api/projects/heart", headers=lung_reader)
    assert status == 403 and "may not read project heart" in body["error"]
    assert call(router, "GET", "/api/projects/heart/studies/1.2.3/archive", headers=lung_reader)[0] == 403
    assert call(router, "GET", "/api/projects/lung", headers=lung_reader)[0] == 200
    status, _ = call(router, "POST", "/api/projects/lung/studies", {"uids": ["1.2.3"]}, headers=lung_reader)
    assert status == 403  # read only
    status, body = call(
        router, "POST", "/api/projects/heart/studies", {"uids": [CENSUS[3][0]]}, headers=heart_writer
    )
    assert status == 200 and body["added"] == 1
    assert call(router, "POST", "/api/projects", {"name": "brain"}, headers=heart_writer)[0] == 403
    assert call(router, "GET", "/api/projects")[0] == 401  # no token
    assert sql(data.cfg, "SELECT added_by FROM rpacs.project_study WHERE project = 'heart' AND study_instance_uid = %s",
               (CENSUS[3][0],)) == [("park",)]  # fmt: skip

    # an explicit member (by user name) reads a project no token role names
    status, _ = call(router, "POST", "/api/projects/heart/members",
                     {"kind": "user", "principal": "kim", "access": "read"}, headers=admin)  # fmt: skip
    assert status == 200
    status, body = call(router, "GET", "/api/projects/heart", headers=lung_reader)
    assert status == 200 and body["write"] is False
    assert sorted(r["study_instance_uid"] for r in body["rows"]) == [CENSUS[2][0], CENSUS[3][0]]
    assert [p["name"] for p in call(router, "GET", "/api/projects", headers=lung_reader)[1]["rows"]] == [
        "heart",
        "lung",
    ]

    assert plugin.audit_writer.flush(20)
    plugin.audit_writer.stop()
    got = sql(data.cfg, """SELECT status, outcome, actor_username, study_uids FROM audit.event
                            WHERE action = '/api/projects/{name}' ORDER BY id""")  # fmt: skip
    assert [(s, o, u) for s, o, u, _ in got] == [
        (403, "denied", "kim"), (200, "success", "kim"), (200, "success", "kim")
    ]  # fmt: skip
    assert sorted(got[2][3]) == sorted([CENSUS[2][0], CENSUS[3][0]])  # the view names the studies it showed


def test_a_zip_with_a_broken_file_stores_the_good_ones_and_the_study_downloads_as_a_zip(data, issuer):  # noqa: F811
    r = data.router
    call(r, "POST", "/api/projects", {"name": "upload-test"})
    study = f"1.2.826.0.17.{time.time_ns()}"  # new in the stack's research PACS on each run
    good = [dicom_bytes(study, modality="PT"), dicom_bytes(study, modality="CT")]
    broken = good[0][: len(good[0]) - 9]  # cut inside its last element
    body = zip_of({"dir/a.dcm": good[0], "dir/b.dcm": good[1], "dir/broken.dcm": broken, "readme.txt": b"hi"})
    status, answer = call(
        r, "POST", "/api/projects/upload-test/upload", body, {"Content-Type": "application/zip"}
    )
    assert status == 200, answer
    assert (answer["files"], answer["stored"], answer["bad_files"], answer["added"]) == (4, 2, 2, 1)
    reasons = {b["file"]: b["reason"] for b in answer["bad"]}
    assert reasons["readme.txt"].startswith("not a DICOM file")
    assert reasons["dir/broken.dcm"].startswith(("cut short", "unreadable DICOM"))
    assert answer["study_instance_uids"] == [study]
    row = sql(data.cfg, """SELECT how, study_date, description, modalities, series_count, instance_count
                             FROM rpacs.project_study WHERE project = 'upload-test'""")  # fmt: skip
    assert row == [("upload", dt.date(2024, 1, 2), "PET-CT WB", ["CT", "PT"], 1, 2)]

    # the same ZIP again: already stored, nothing added twice; only bad files: 400 with the list
    status, again = call(
        r, "POST", "/api/projects/upload-test/upload", body, {"Content-Type": "application/zip"}
    )
    assert status == 200 and (again["stored"], again["already_stored"], again["added"], again["already"]) == (
        0,
        2,
        0,
        1,
    )
    status, bad = call(r, "POST", "/api/projects/upload-test/upload", zip_of({"x.dcm": broken}),
                       {"Content-Type": "application/zip"})  # fmt: skip
    assert status == 400 and bad["bad_files"] == 1 and "error" in bad
    status, bad = call(
        r,
        "POST",
        "/api/projects/upload-test/upload",
        b"PK\x03\x04 broken",
        {"Content-Type": "application/zip"},
    )
    assert status == 400 and "not a readable ZIP" in bad["error"]
    # the same files into another project: refused, the study stays as it is (it joins a project by being added)
    call(r, "POST", "/api/projects", {"name": "upload-other"})
    status, other = call(
        r, "POST", "/api/projects/upload-other/upload", body, {"Content-Type": "application/zip"}
    )
    assert status == 400 and (other["stored"], other["already_stored"], other["bad_files"]) == (0, 0, 4)
    assert {b["file"]: b["reason"] for b in other["bad"]}["dir/a.dcm"].startswith(
        "the research PACS holds this study"
    )
    assert sql(data.cfg, "SELECT count(*) FROM rpacs.project_study WHERE project = 'upload-other'") == [(0,)]
    # one file as application/dicom
    third = dicom_bytes(study, modality="CT")
    status, one = call(r, "POST", "/api/projects/upload-test/upload", third, {"Content-Type": "application/dicom"},
                       filename="c.dcm")  # fmt: skip
    assert status == 200 and one["stored"] == 1 and one["already"] == 1

    status, resp = call(r, "GET", f"/api/projects/upload-test/studies/{study}/archive")
    assert status == 200 and resp.content_type == "application/zip"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{study}.zip"'
    with zipfile.ZipFile(io.BytesIO(resp.body)) as z:
        sops = sorted(
            dcmread(io.BytesIO(z.read(n))).SOPInstanceUID for n in z.namelist() if not n.endswith("/")
        )
    assert sops == sorted(dcmread(io.BytesIO(b)).SOPInstanceUID for b in [*good, third])
    # a member's download through the keycloak router is audited with the study's UID
    router = Router(KeycloakAuth(accounts(issuer)))
    pages.register_routes(router, SimpleNamespace(cfg=data.cfg))
    plugin = SimpleNamespace(router=router, cfg=data.cfg)
    assert audit_routes.install(plugin)
    member = {
        "authorization": f"Bearer {token(issuer, roles=['project:upload-test:read'], preferred_username='yoon')}"
    }
    status, resp = call(router, "GET", f"/api/projects/upload-test/studies/{study}/archive", headers=member)
    assert status == 200 and resp.body[:2] == b"PK"
    assert plugin.audit_writer.flush(20)
    plugin.audit_writer.stop()
    got = sql(data.cfg, """SELECT actor_username, status, study_uids, format FROM audit.event
                            WHERE action = '/api/projects/{name}/studies/{uid}/archive'
                              AND actor_username = 'yoon'""")  # fmt: skip
    assert got == [("yoon", 200, [study], "other")]
    # a study of the project the research PACS does not hold, and one outside the project
    call(r, "POST", "/api/projects/upload-test/studies", {"uids": ["1.2.826.0.17.404"]})
    status, body = call(r, "GET", "/api/projects/upload-test/studies/1.2.826.0.17.404/archive")
    assert status == 404 and "does not hold" in body["error"]
    assert call(r, "GET", f"/api/projects/lung/studies/{study}/archive")[0] == 404


def test_the_command_line_creates_adds_lists_and_names_members(stack, tmp_path, capsys):
    from nmdose.cli import main as cli_main

    args = stack.cli_args()
    name = f"cli-{time.time_ns() % 10**9}"
    uids = [f"1.2.826.0.17.7.{i}" for i in range(3)]
    assert cli_main([*args, "project", "create", name, "--description", "from the shell"]) == 0
    assert cli_main([*args, "project", "create", name]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"project {name}: exists already"
    assert cli_main([*args, "project", "add", name, "--uid", uids[0], uids[1]]) == 0
    assert cli_main([*args, "project", "add", name, "--uid", uids[0]]) == 0
    assert "0 added, 1 already there" in capsys.readouterr().out
    listing = tmp_path / "list.csv"
    listing.write_text(f"StudyInstanceUID\n{uids[1]}\n{uids[2]}\nnot-a-uid\n")
    assert cli_main([*args, "project", "add", name, "--csv", str(listing), "--json"]) == 1  # a line refused
    out = json.loads(capsys.readouterr().out)
    assert (out["added"], out["already"], out["bad_lines"]) == (
        1,
        1,
        ["line 4: 'not-a-uid' is not a StudyInstanceUID"],
    )
    assert cli_main([*args, "project", "list", name, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["study_instance_uid"] for r in rows) == uids and {r["how"] for r in rows} == {
        "uid",
        "csv",
    }
    assert cli_main([*args, "project", "members", name, "--add", "lee", "--access", "write", "--json"]) == 0
    assert [(m["kind"], m["principal"], m["access"]) for m in json.loads(capsys.readouterr().out)] == [
        ("user", "lee", "write")
    ]
    assert (
        cli_main([*args, "project", "add", "No Such", "--uid", uids[0]]) == 2
    )  # bad name: refused, said why
    assert "lower-case letters" in capsys.readouterr().err
    assert cli_main([*args, "project", "remove", name, "--uid", uids[2]]) == 0
    got = sql(stack.cfg, "SELECT action, study_uids FROM audit.event WHERE source = 'cli' AND params->>'project' = %s"
              " ORDER BY id", (name,))  # fmt: skip
    assert [a for a, _ in got] == ["project create", "project create", "project add", "project add", "project add",
                                   "project list", "project member add", "project remove"]  # fmt: skip
    assert got[-1][1] == [uids[2]]
    with contextlib.closing(connect(stack.cfg)) as conn, conn, conn.cursor() as cur:
        cur.execute("DELETE FROM rpacs.project WHERE name = %s", (name,))
