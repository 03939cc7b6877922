"""Acknowledging the dose page's outliers (issue 19; web/routes_outliers.py, sql/021_outlier_acks.sql) against a
real PostgreSQL, through the real router in keycloak mode with the audit trail installed: synthetic studies go
through the real dose ingest; only alerts:ack may acknowledge, with a comment; the acknowledgement is stored with
who (the token's user), when and its history, audited, idempotent (again: the comment replaced, the first time
kept), shown by the outlier list (the worklist hides it by default) without invalidating the other cached dose
answers; a dose alert of the same study acknowledged on the alerts page shows in the row."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from types import SimpleNamespace

import pytest
from pydicom.uid import generate_uid

from nmdose.alerts import store
from nmdose.config import ReferenceLevel, ReferenceLevelsFile
from nmdose.db import connect
from nmdose.dose.ingest import ingest_files
from nmdose.simulate import rdsr as R
from tests.support import scratch_database
from tests.unit.test_auth import issuer, realm_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

LEVEL = ReferenceLevel.model_validate(
    {"name": "abdomen event DLP", "modality": "CT", "per": "event", "match": {"protocols": ["^abdomen"]},
     "quantity": "dlp_mgycm", "value": 100, "source": "test", "year": 2024, "status": "official"}
)  # fmt: skip
PATH = "/api/dose/outliers/ack"


def sql(conn, query, params=()):
    with conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else cur.rowcount


def study(cfg, folder, name: str, dlp: float, protocol: str = "Abdomen") -> str:
    """One CT study (one `protocol` event of `dlp` mGy.cm) through the real ingest: its StudyInstanceUID."""
    info = R.DoseStudyInfo(study_instance_uid=generate_uid(), study_description=f"CT ack {name}")
    event = R.CtAcquisition(acquisition_protocol=protocol, dlp_mgycm=dlp, ctdivol_mgy=dlp / 40)
    ds = R.ct_radiation_dose_sr(info, [event], series_uid=generate_uid(), sop_uid=generate_uid())
    folder.mkdir(parents=True, exist_ok=True)
    assert ingest_files(cfg, [R.save(ds, folder / f"{name}.dcm")])[0]["status"] == "ingested"
    return info.study_instance_uid


@pytest.fixture(scope="module")
def data(stack, tmp_path_factory):
    """A scratch database with one reference level and three studies through the real ingest: `high` and `other`
    above 2 x the level, `low` below it; a dose alert rule fired on `high` and `other`."""
    with scratch_database(stack.cfg, "outlier_ack") as scratch:
        cfg = dataclasses.replace(scratch, reference_levels=ReferenceLevelsFile(levels=[LEVEL]))
        with contextlib.closing(connect(cfg)) as conn:
            store.upsert_rule(conn, {"name": "dlp>300", "kind": "dlp_above", "threshold": 300})
        folder = tmp_path_factory.mktemp("ack")
        high, low = study(cfg, folder, "high", 500.0), study(cfg, folder, "low", 50.0)
        other = study(cfg, folder, "other", 400.0)
        # a group of 21 (no level applies): its top value is above the group's 95th percentile
        group = [study(cfg, folder, f"chest {i}", 10.0 + i, "Chest p95") for i in range(20)]
        top = study(cfg, folder, "chest top", 90.0, "Chest p95")
        yield SimpleNamespace(cfg=cfg, high=high, low=low, other=other, group=group, top=top)


@pytest.fixture
def env(data, issuer):  # noqa: F811
    """The real router in keycloak mode (the realm's tokens) with the audit trail installed, on `data`."""
    from nmdose.audit import routes as audit_routes
    from nmdose.auth import KeycloakAuth
    from nmdose.web import pages
    from nmdose.web.router import Request, Router
    from tests.unit.test_auth import accounts, token

    router = Router(KeycloakAuth(accounts(issuer)))
    pages.register_routes(router, SimpleNamespace(cfg=data.cfg))
    plugin = SimpleNamespace(router=router, cfg=data.cfg)
    assert audit_routes.install(plugin)

    def call(method, path, roles=("nmdose-physicist",), body=None, **query):
        headers = {"authorization": f"Bearer {token(issuer, roles=list(roles))}"}
        payload = b""
        if body is not None:
            headers["content-type"] = "application/json"
            payload = json.dumps(body).encode()
        resp = router.dispatch(Request(method, path, query=query, headers=headers, body=payload))
        return resp.status, (json.loads(resp.body) if resp.body else None)

    with contextlib.closing(connect(data.cfg)) as conn:
        yield SimpleNamespace(**vars(data), conn=conn, call=call, plugin=plugin)
    plugin.audit_writer.stop()


def rows_of(env, uid, **query):
    status, body = env.call("GET", "/api/dose/outliers", **query)
    assert status == 200, body
    return body, [r for r in body["rows"] if r["study_instance_uid"] == uid]


def test_acknowledge_needs_alerts_ack_and_a_comment_and_an_outlier(env):
    body, rows = rows_of(env, env.high)
    assert [(r["reason"], r["kind"], r["acknowledged_by"], r["ack_comment"]) for r in rows] == [
        ("reference_level", "ct_event", None, None)
    ]
    assert body["acknowledged"] == "no" and body["ack_counts"]["yes"] == 0
    assert not rows_of(env, env.low)[1]  # 50 mGy.cm: no outlier
    ok = {"study_instance_uid": env.high, "comment": "obese patient; protocol checked"}
    assert env.call("POST", PATH, ["nmdose-technologist"], ok)[0] == 403
    for bad in ({**ok, "comment": "  \n "}, {"study_instance_uid": env.high}, {**ok, "study_instance_uid": "x'"},
                {**ok, "reason": "because"}, {**ok, "comment": "x" * 2001}):  # fmt: skip
        status, answer = env.call("POST", PATH, body=bad)
        assert status == 400, (bad, answer)
    assert "'comment' is required" in env.call("POST", PATH, body={**ok, "comment": " "})[1]["error"]
    status, answer = env.call("POST", PATH, body={**ok, "study_instance_uid": "1.2.3.999"})
    assert status == 404 and "no dose record" in answer["error"]
    status, answer = env.call("POST", PATH, body={**ok, "study_instance_uid": env.low})
    assert status == 404 and "is not an outlier" in answer["error"]
    status, answer = env.call("POST", PATH, body={**ok, "reason": "p95"})  # 3 values: no p95 group
    assert status == 404 and "not a p95 outlier" in answer["error"]
    status, answer = env.call("POST", PATH, body=ok, description="CT ack low")  # filtered: not in that list
    assert status == 404
    assert sql(env.conn, "SELECT count(*) FROM dose.outlier_ack")[0][0] == 0
    assert sql(env.conn, "SELECT count(*) FROM dose.outlier_ack_log")[0][0] == 0


def test_acknowledge_stores_who_when_comment_audited_idempotent_and_the_worklist_shows_it(env):
    _, before = rows_of(env, env.other)
    assert before and before[0]["acknowledged_at"] is None
    version = sql(env.conn, "SELECT dose.data_version()")[0][0]
    cached = sql(env.conn, "SELECT count(*) FROM dose.web_cache")[0][0]
    ok = {"study_instance_uid": env.other, "reason": "reference_level", "comment": "trauma, two passes"}
    audited_before = sql(env.conn, "SELECT coalesce(max(id), 0) FROM audit.event")[0][0]
    assert env.call("POST", PATH, ["nmdose-technologist"], ok)[0] == 403
    assert env.call("POST", PATH, body={**ok, "comment": ""})[0] == 400
    assert env.call("POST", PATH, body={**ok, "study_instance_uid": env.low})[0] == 404
    status, first = env.call("POST", PATH, body=ok)
    assert status == 200 and (first["acknowledged_by"], first["ack_comment"], first["times"]) == (
        "kim", "trauma, two passes", 1)  # fmt: skip
    assert sql(
        env.conn,
        "SELECT reason, acknowledged_by, ack_comment FROM dose.outlier_ack WHERE study_instance_uid = %s",
        (env.other,),
    ) == [("reference_level", "kim", "trauma, two passes")]
    # the dose data did not change (the other cached answers stay valid); the outlier list shows it at once
    assert sql(env.conn, "SELECT dose.data_version()")[0][0] == version
    assert sql(env.conn, "SELECT count(*) FROM dose.web_cache")[0][0] >= cached
    assert not rows_of(env, env.other)[1]  # the worklist (default acknowledged=no) no longer lists it
    body, acked = rows_of(env, env.other, acknowledged="yes")
    assert [(r["acknowledged_by"], r["ack_comment"]) for r in acked] == [("kim", "trauma, two passes")]
    assert body["ack_counts"]["yes"] == 1 and body["total"] == 1
    assert rows_of(env, env.other, acknowledged="all")[1][0]["acknowledged_by"] == "kim"
    # again: the comment replaced, the first time kept, both in the history
    status, again = env.call("POST", PATH, body={**ok, "comment": "trauma; reviewed with the radiologist"})
    assert status == 200 and again["times"] == 2
    assert again["first_acknowledged_at"] == first["first_acknowledged_at"]
    assert sql(
        env.conn,
        """SELECT count(*), min(ack_comment), max(first_acknowledged_at) = min(first_acknowledged_at)
             FROM dose.outlier_ack WHERE study_instance_uid = %s""",
        (env.other,),
    ) == [(1, "trauma; reviewed with the radiologist", True)]
    assert sql(
        env.conn,
        "SELECT ack_comment FROM dose.outlier_ack_log WHERE study_instance_uid = %s ORDER BY id",
        (env.other,),
    ) == [("trauma, two passes",), ("trauma; reviewed with the radiologist",)]
    assert (
        rows_of(env, env.other, acknowledged="yes")[1][0]["ack_comment"]
        == "trauma; reviewed with the radiologist"
    )
    # audited: the refusal, the failures and the acknowledgements, naming the study
    assert env.plugin.audit_writer.flush(20)
    audit = sql(
        env.conn,
        """SELECT status, outcome, permission, study_uids FROM audit.event WHERE action = %s AND method = 'POST'
            AND id > %s ORDER BY id""",
        ("/api/dose/outliers/ack", audited_before),
    )
    assert [(s, o, p) for s, o, p, _u in audit] == [
        (403, "denied", "alerts:ack"), (400, "failure", "alerts:ack"), (404, "failure", "alerts:ack"),
        (200, "success", "alerts:ack"), (200, "success", "alerts:ack")]  # fmt: skip
    assert [env.other in (u or []) for s, _o, _p, u in audit if s == 200] == [True, True]


def test_an_acknowledged_dose_alert_of_the_study_shows_in_the_row(env):
    _, rows = rows_of(env, env.high, acknowledged="all")
    assert rows and rows[0]["alert_acknowledged_at"] is None
    firing = [r for r in store.firings(env.conn, state="all")[0] if r["study_instance_uid"] == env.high]
    assert len(firing) == 1  # the dlp>300 rule fired on the study at ingest
    store.acknowledge(env.conn, firing[0]["id"], "lee", "called the technologist")
    _, rows = rows_of(env, env.high, acknowledged="all")
    assert (rows[0]["alert_acknowledged_by"], rows[0]["alert_ack_comment"]) == (
        "lee",
        "called the technologist",
    )
    assert rows[0]["acknowledged_at"] is None  # the outlier itself is still to review


def test_a_p95_outlier_is_checked_against_its_whole_filtered_group(env):
    body, rows = rows_of(env, env.top, reason="p95")
    assert [(r["reason"], r["quantity"]) for r in rows] == [("p95", "ctdivol_mgy"), ("p95", "dlp_mgycm")]
    # a reference-level acknowledgement of a study that only has p95 hits: not an outlier of that reason
    ok = {"study_instance_uid": env.top, "comment": "large patient"}
    status, answer = env.call("POST", PATH, body={**ok, "reason": "reference_level"})
    assert status == 404 and "not a reference_level outlier" in answer["error"]
    assert env.call("POST", PATH, body={**ok, "study_instance_uid": env.group[0], "reason": "p95"})[0] == 404
    # under a filter that leaves 1 value in the group there is no 95th percentile: not an outlier there
    assert env.call("POST", PATH, body={**ok, "reason": "p95"}, description="CT ack chest top")[0] == 404
    status, answer = env.call("POST", PATH, body={**ok, "reason": "p95"}, protocol="chest p95")
    assert status == 200 and answer["reason"] == "p95"
    status, answer = env.call("POST", PATH, body=ok)  # every reason of the study
    assert status == 200 and answer["reason"] == "any"
    assert sql(
        env.conn,
        "SELECT reason, ack_comment FROM dose.outlier_ack WHERE study_instance_uid = %s ORDER BY reason",
        (env.top,),
    ) == [("any", "large patient"), ("p95", "large patient")]
    assert not rows_of(env, env.top)[1]  # nothing of it left to review
