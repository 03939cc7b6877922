"""The history of the outlier acknowledgements (`GET /api/dose/outliers/ack-history`; web/routes_outliers.py,
web/sql_outliers.py `history`) against a real PostgreSQL, through the real router in keycloak mode with the audit
trail installed: synthetic studies go through the real dose ingest and are acknowledged through the real POST
route; the history lists every acknowledgement, replaced ones too, newest first, with filters and paging; bad
parameters answer 400 with a clear message; it needs dose:read (its CSV dose:export), a refusal is audited, and
every read is audited with the studies of the answer (never a name). The outlier list's rows carry how many
acknowledgements their study and reason have had (`ack_history`)."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import io
import json
from types import SimpleNamespace

import pytest
from pydicom.uid import generate_uid

from nmdose.config import ReferenceLevelsFile
from nmdose.db import connect
from nmdose.dose.ingest import ingest_files
from nmdose.simulate import rdsr as R
from tests.integration.test_outlier_ack import LEVEL
from tests.support import scratch_database
from tests.unit.test_auth import REALM_KEY, accounts, realm_server, token  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

ACK = "/api/dose/outliers/ack"
HISTORY = "/api/dose/outliers/ack-history"
NAME = "HISTORY^PATIENT"  # in every synthetic study: never in an audit row


def sql(conn, query, params=()):
    with conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else cur.rowcount


def study(cfg, folder, name: str, dlp: float) -> str:
    """One CT study (one Abdomen event of `dlp` mGy.cm) through the real ingest: its StudyInstanceUID."""
    info = R.DoseStudyInfo(
        study_instance_uid=generate_uid(), study_description=f"CT history {name}", patient_name=NAME
    )
    event = R.CtAcquisition(acquisition_protocol="Abdomen", dlp_mgycm=dlp, ctdivol_mgy=dlp / 40)
    ds = R.ct_radiation_dose_sr(info, [event], series_uid=generate_uid(), sop_uid=generate_uid())
    folder.mkdir(parents=True, exist_ok=True)
    assert ingest_files(cfg, [R.save(ds, folder / f"{name}.dcm")])[0]["status"] == "ingested"
    return info.study_instance_uid


@pytest.fixture(scope="module")
def env(stack, realm_server, tmp_path_factory):  # noqa: F811
    """A scratch database with one reference level and three studies above 2 x the level (`high`, `other`,
    `third`: never acknowledged), the real router in keycloak mode (the realm's tokens) with the audit trail, and
    the acknowledgements made through the real POST route: `high` of its reference level by kim twice (the
    first replaced), `other` of every reason by lee."""
    from nmdose.audit import routes as audit_routes
    from nmdose.auth import KeycloakAuth
    from nmdose.web import pages
    from nmdose.web.router import Request, Router

    realm, issuer = realm_server
    realm.keys = {"realm-key": REALM_KEY}
    with scratch_database(stack.cfg, "ack_history") as scratch:
        cfg = dataclasses.replace(scratch, reference_levels=ReferenceLevelsFile(levels=[LEVEL]))
        folder = tmp_path_factory.mktemp("history")
        high, other, third = (
            study(cfg, folder, n, v) for n, v in (("high", 500.0), ("other", 400.0), ("third", 300.0))
        )
        router = Router(KeycloakAuth(accounts(issuer)))
        pages.register_routes(router, SimpleNamespace(cfg=cfg))
        plugin = SimpleNamespace(router=router, cfg=cfg)
        assert audit_routes.install(plugin)

        def call(method, path, roles=("nmdose-physicist",), body=None, user="kim", **query):
            tok = token(issuer, roles=list(roles), preferred_username=user)
            headers = {"authorization": f"Bearer {tok}"}
            payload = b""
            if body is not None:
                headers["content-type"] = "application/json"
                payload = json.dumps(body).encode()
            resp = router.dispatch(Request(method, path, query=query, headers=headers, body=payload))
            if resp.content_type.startswith("text/csv"):
                return resp.status, resp.body.decode("utf-8-sig")
            return resp.status, (json.loads(resp.body) if resp.body else None)

        acks = [
            ({"study_instance_uid": high, "reason": "reference_level", "comment": "first look"}, "kim"),
            (
                {"study_instance_uid": high, "reason": "reference_level", "comment": "checked the protocol"},
                "kim",
            ),
            ({"study_instance_uid": other, "comment": "trauma, two passes"}, "lee"),  # every reason: `any`
        ]
        for body, user in acks:
            status, answer = call("POST", ACK, body=body, user=user)
            assert status == 200, answer
        with contextlib.closing(connect(cfg)) as conn:
            yield SimpleNamespace(
                cfg=cfg, high=high, other=other, third=third, call=call, plugin=plugin, conn=conn
            )
        plugin.audit_writer.stop()


def history(env, **query):
    status, body = env.call("GET", HISTORY, **query)
    assert status == 200, body
    assert body["count"] == len(body["rows"])
    return body


def test_history_lists_both_acknowledgements_newest_first_the_older_replaced(env):
    body = history(env, study_instance_uid=env.high)
    rows = body["rows"]
    assert body["total"] == 2 and body["offset"] == 0 and body["limit"] == 100
    assert [(r["comment"], r["acknowledged_by"], r["reason"], r["current"]) for r in rows] == [
        ("checked the protocol", "kim", "reference_level", True),
        ("first look", "kim", "reference_level", False),
    ]
    newer, older = (dt.datetime.fromisoformat(r["acknowledged_at"]) for r in rows)
    assert "T" in rows[0]["acknowledged_at"] and newer.utcoffset() is not None  # ISO 8601 with its offset
    assert newer > older
    assert rows[0]["replaced_at"] is None and rows[1]["replaced_at"] == rows[0]["acknowledged_at"]
    # the same as stored: the log, and the current acknowledgement's time
    assert sql(
        env.conn,
        """SELECT ack_comment, acknowledged_at FROM dose.outlier_ack_log WHERE study_instance_uid = %s
            ORDER BY id DESC""",
        (env.high,),
    ) == [(r["comment"], dt.datetime.fromisoformat(r["acknowledged_at"])) for r in rows]
    assert sql(
        env.conn, "SELECT acknowledged_at FROM dose.outlier_ack WHERE study_instance_uid = %s", (env.high,)
    ) == [(newer,)]


def test_the_outlier_list_counts_the_history_of_each_acknowledged_row(env):
    status, body = env.call("GET", "/api/dose/outliers", acknowledged="all")
    assert status == 200, body
    by_study = {r["study_instance_uid"]: r for r in body["rows"]}
    assert (
        by_study[env.high]["ack_history"] == 2 and by_study[env.high]["ack_comment"] == "checked the protocol"
    )
    assert by_study[env.other]["ack_history"] == 1  # acknowledged for every reason
    assert by_study[env.third]["ack_history"] is None and by_study[env.third]["acknowledged_at"] is None
    for uid in (env.high, env.other):  # the history's total for the row's study and reason
        row = by_study[uid]
        assert history(env, study_instance_uid=uid, reason=row["reason"])["total"] == row["ack_history"]
    # the worklist (not yet acknowledged): no history
    status, body = env.call("GET", "/api/dose/outliers")
    assert status == 200 and [(r["study_instance_uid"], r["ack_history"]) for r in body["rows"]] == [
        (env.third, None)
    ]


def test_filters_and_paging(env):
    everything = history(env)
    assert everything["total"] == 3
    assert [(r["study_instance_uid"], r["comment"]) for r in everything["rows"]] == [
        (env.other, "trauma, two passes"), (env.high, "checked the protocol"), (env.high, "first look")]  # fmt: skip
    assert [r["reason"] for r in everything["rows"]] == ["any", "reference_level", "reference_level"]
    uids = lambda b: [r["study_instance_uid"] for r in b["rows"]]  # noqa: E731
    assert uids(history(env, who="lee")) == [env.other]
    assert uids(history(env, who="kim")) == [env.high, env.high]
    assert history(env, who="Kim")["total"] == 0  # exact
    # a reason: those given for it or for every reason; `any`: those given for every reason only
    assert history(env, reason="reference_level")["total"] == 3
    assert uids(history(env, reason="p95")) == [env.other]
    assert uids(history(env, reason="any")) == [env.other]
    assert history(env, study_instance_uid=env.third)["total"] == 0
    assert history(env, study_instance_uid=env.other, reason="reference_level")["total"] == 1
    # the day of the acknowledgement (the database's, as it compares them)
    today = sql(env.conn, "SELECT current_date")[0][0]
    day = dt.timedelta(days=1)
    assert history(env, **{"from": str(today), "to": str(today)})["total"] == 3
    assert history(env, **{"from": str(today + day)})["total"] == 0
    assert history(env, to=str(today - day))["total"] == 0
    assert history(env, to=str(today), who="lee")["total"] == 1
    # paging: one row a page, in the same order, the total on every page
    pages = [history(env, limit="1", offset=str(i)) for i in range(4)]
    assert [p["total"] for p in pages] == [3, 3, 3, 3]
    assert [p["rows"] for p in pages[:3]] == [[r] for r in everything["rows"]]
    assert pages[3]["rows"] == [] and pages[3]["offset"] == 3
    assert history(env, limit="2", offset="1")["rows"] == everything["rows"][1:]
    assert history(env, limit="500")["total"] == 3


def test_csv_export_holds_the_rows_and_needs_dose_export(env):
    status, text = env.call("GET", HISTORY, format="csv", study_instance_uid=env.high)
    assert status == 200
    lines = list(csv.DictReader(io.StringIO(text)))
    assert [(r["study_instance_uid"], r["comment"], r["current"]) for r in lines] == [
        (env.high, "checked the protocol", "True"), (env.high, "first look", "False")]  # fmt: skip
    assert env.call("GET", HISTORY, ["nmdose-technologist"], format="csv")[0] == 403  # dose:read only


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "0"}, "parameter 'limit' must be between 1 and 500, got 0"),
        ({"limit": "501"}, "parameter 'limit' must be between 1 and 500, got 501"),
        ({"limit": "ten"}, "parameter 'limit' must be an integer"),
        ({"offset": "-1"}, "parameter 'offset' must be between 0"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "parameter 'from' is after 'to'"),
        ({"from": "2026-13-01"}, "parameter 'from' must be a date YYYY-MM-DD, got '2026-13-01'"),
        ({"to": "yesterday"}, "parameter 'to' must be a date YYYY-MM-DD"),
        ({"reason": "because"}, "parameter 'reason' must be one of reference_level, p95, any"),
        ({"study_instance_uid": "1.2.x'"}, "parameter 'study_instance_uid' must be a DICOM UID"),
        (
            {"study_instance_uid": "1." * 40},
            "parameter 'study_instance_uid' must be a DICOM UID of at most 64",
        ),
        ({"who": "kim\x00"}, "parameter 'who' contains a NUL character"),
        ({"patient": "x"}, "unknown parameter 'patient'"),
    ],
)
def test_a_bad_parameter_answers_400_with_a_clear_message(env, query, message):
    status, body = env.call("GET", HISTORY, **query)
    assert status == 400 and message in body["error"], body


def test_it_needs_dose_read_refusals_and_reads_are_audited_with_the_studies_never_a_name(env):
    assert env.plugin.audit_writer.flush(20)  # the earlier tests' rows
    before = sql(env.conn, "SELECT coalesce(max(id), 0) FROM audit.event")[0][0]
    status, body = env.call("GET", HISTORY, ["nmdose-privacy-officer"], user="park")  # audit:read only
    assert status == 403 and "dose:read" in body["error"], body
    assert env.call("GET", HISTORY, ["nmdose-technologist"], user="choi")[0] == 200  # dose:read
    assert env.call("GET", HISTORY, study_instance_uid=env.high)[0] == 200
    assert env.call("GET", HISTORY, limit="0")[0] == 400
    assert env.call("GET", HISTORY, who="kim\x00")[0] == 400  # recorded too (no NUL in PostgreSQL text)
    assert env.plugin.audit_writer.flush(20)
    got = sql(
        env.conn,
        """SELECT actor_username, status, outcome, permission, study_uids, rows_returned, params, e::text
             FROM audit.event e WHERE action = %s AND id > %s ORDER BY id""",
        (HISTORY, before),
    )
    assert [(u, s, o, p) for u, s, o, p, *_ in got] == [
        ("park", 403, "denied", "dose:read"), ("choi", 200, "success", "dose:read"),
        ("kim", 200, "success", "dose:read"), ("kim", 400, "failure", "dose:read"),
        ("kim", 400, "failure", "dose:read")]  # fmt: skip
    assert sorted(got[1][4]) == sorted({env.high, env.other}) and got[1][5] == 3
    assert got[2][4] == [env.high] and got[2][5] == 2 and got[2][6]["study_instance_uid"] == env.high
    assert not any(NAME in text for *_, text in got)  # StudyInstanceUIDs, never names
    assert got[4][6]["who"] == "kim\ufffd"  # the NUL marked, the row kept
