"""Dose alerts against a real PostgreSQL, a real SMTP server (aiosmtpd, STARTTLS + AUTH on loopback) and a real
HTTP server for the webhook: synthetic studies with known answers go through the dose ingest; each rule kind fires
on the study that exceeds it and not on the other, once (a re-ingest fires nothing again); the outbox sends each
delivery once, keeps it through an SMTP server that is down, and resumes one whose sender died."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import json
import threading

import pytest
from pydicom.uid import generate_uid

from nmdose.alerts import outbox, sink, store
from nmdose.alerts.settings import AlertSettings
from nmdose.db import connect
from nmdose.dose.ingest import ingest_files
from nmdose.simulate import rdsr as R
from tests.support import scratch_database
from tests.unit.test_auth import issuer, realm_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cfg(stack):
    with scratch_database(stack.cfg, "alerts") as cfg:
        yield cfg


@pytest.fixture
def conn(cfg):
    with contextlib.closing(connect(cfg)) as c:
        with c, c.cursor() as cur:  # each test starts without rules, firings or deliveries
            cur.execute("TRUNCATE dose.alert_rule CASCADE")
        yield c


def sql(conn, query, params=()):
    with conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else cur.rowcount


def ct_study(folder, *, pid="P1", date="20240510", description="CT Head", events=(), activity=None,
             weight=70.0):  # fmt: skip
    """Dose objects of one study: a CT RDSR with `events` (CtAcquisition) and, with `activity`, an RRDSR."""
    folder.mkdir(parents=True, exist_ok=True)
    info = R.DoseStudyInfo(patient_id=pid, study_date=date, study_description=description,
                           patient_weight_kg=weight)  # fmt: skip
    files = [R.save(R.ct_radiation_dose_sr(info, list(events), series_uid=generate_uid(), sop_uid=generate_uid()),
                    folder / "ct.dcm")]  # fmt: skip
    if activity is not None:
        y, m, d = int(date[:4]), int(date[4:6]), int(date[6:])
        admin = R.RadiopharmaceuticalAdministration(
            activity_mbq=activity, start_datetime=dt.datetime(y, m, d, 9)
        )
        files.append(R.save(R.radiopharmaceutical_dose_sr(info, admin, series_uid=generate_uid(),
                                                          sop_uid=generate_uid()), folder / "rrdsr.dcm"))  # fmt: skip
    return info.study_instance_uid, files


CHECK = R.DoseCheck(ctdivol_alert_value_configured=True, ctdivol_alert_value=80.0,
                    accumulated_ctdivol_forward_estimate=100.0, alert_reason_for_proceeding="Large patient",
                    alert_person_name="KIM^TECH")  # fmt: skip


def fired(conn):
    """{rule name: sorted study UIDs it fired on}"""
    out: dict[str, list[str]] = {}
    for name, uid in sql(conn, """SELECT r.name, f.study_instance_uid FROM dose.alert_firing f
                                  JOIN dose.alert_rule r ON r.id = f.rule_id ORDER BY 1, 2"""):  # fmt: skip
        out.setdefault(name, []).append(uid)
    return out


def test_each_rule_kind_fires_on_the_study_above_it_once(cfg, conn, tmp_path):
    rules = [
        {"name": "ctdivol>50", "kind": "ctdivol_above", "threshold": 50},
        {"name": "dlp>1000", "kind": "dlp_above", "threshold": 1000},
        {"name": "2x DRL ctdivol", "kind": "ctdivol_level", "factor": 2},  # UK NDRL CT head 47 mGy (config)
        {"name": "E>10", "kind": "effective_dose_above", "threshold": 10},
        {
            "name": "FDG band",
            "kind": "activity_band",
            "band_low": 150,
            "band_high": 450,
            "agent": "fluorodeoxy",
        },
        {"name": "FDG per kg", "kind": "activity_per_kg_band", "band_high": 5.5},
        {"name": "scanner dose check", "kind": "dose_check"},
        {"name": "3 studies in 30 d", "kind": "patient_studies", "max_studies": 2, "window_days": 30},
        {"name": "patient 20 mSv in 30 d", "kind": "patient_dose", "threshold": 20, "window_days": 30},
        {"name": "off", "kind": "dlp_above", "threshold": 0, "enabled": False},
        {"name": "scoped to another scanner", "kind": "dlp_above", "threshold": 0, "scanner_id": 999999},
    ]
    for r in rules:
        store.upsert_rule(conn, r)
    head = lambda **kw: R.CtAcquisition(acquisition_protocol="Head routine", target_region="head",  # noqa: E731
                                        phantom="head16", **kw)  # fmt: skip
    # high: CTDIvol 100 (> 50, > 2 x 47), DLP 1200, with the scanner's dose-check alert, FDG 500 MBq (7.1 MBq/kg)
    high, high_files = ct_study(tmp_path / "high", pid="PH", events=[head(ctdivol_mgy=100.0, dlp_mgycm=1200.0,
                                dose_check=CHECK)], activity=500.0)  # fmt: skip
    # low: CTDIvol 40, DLP 600, no dose check, FDG 350 MBq (5 MBq/kg)
    low, low_files = ct_study(tmp_path / "low", pid="PL", events=[head(ctdivol_mgy=40.0, dlp_mgycm=600.0)],
                              activity=350.0)  # fmt: skip
    # the low patient's 2nd and 3rd study within 30 days: only the 3rd makes 3 studies and > 20 mSv
    second, second_files = ct_study(tmp_path / "l2", pid="PL", date="20240515",
                                    events=[head(ctdivol_mgy=40.0, dlp_mgycm=600.0)], activity=350.0)  # fmt: skip
    third, third_files = ct_study(tmp_path / "l3", pid="PL", date="20240520",
                                  events=[head(ctdivol_mgy=40.0, dlp_mgycm=600.0)], activity=350.0)  # fmt: skip
    outcomes = ingest_files(cfg, [*high_files, *low_files, *second_files, *third_files])
    assert {o["status"] for o in outcomes} == {"ingested"}
    e = dict(sql(conn, "SELECT study_instance_uid, total_effective_dose_msv FROM dose.study"))
    assert e[high] > 10 and e[low] < 10 and e[low] + e[second] + e[third] > 20 > e[low] + e[second]
    want = {
        "ctdivol>50": [high], "dlp>1000": [high], "2x DRL ctdivol": [high], "E>10": [high], "FDG band": [high],
        "FDG per kg": [high], "scanner dose check": [high], "3 studies in 30 d": [third],
        "patient 20 mSv in 30 d": [third],
    }  # fmt: skip
    assert fired(conn) == want
    row = sql(conn, """SELECT f.measured, f.limit_value, f.level_name, f.level_source FROM dose.alert_firing f
                       JOIN dose.alert_rule r ON r.id = f.rule_id WHERE r.name = '2x DRL ctdivol'""")[0]  # fmt: skip
    assert row[:3] == (100.0, 94.0, "UK NDRL CT head (acute stroke): CTDIvol") and "UKHSA" in row[3]
    (details,) = sql(conn, """SELECT f.details FROM dose.alert_firing f JOIN dose.alert_rule r ON r.id = f.rule_id
                              WHERE r.name = 'scanner dose check'""")[0]  # fmt: skip
    (event,) = details["events"]
    assert (event["alert_person_name"], event["alert_reason_for_proceeding"]) == ("KIM^TECH", "Large patient")
    assert event["ctdivol_alert_value"] == 80.0 and event["accumulated_ctdivol_forward_estimate"] == 100.0
    # the same files again (unchanged), and a revised copy of the high study's RDSR (recomputed): nothing new
    before = sql(conn, "SELECT count(*) FROM dose.alert_firing")[0][0]
    assert {o["status"] for o in ingest_files(cfg, high_files + low_files)} == {"unchanged"}
    ds = R.ct_radiation_dose_sr(R.DoseStudyInfo(patient_id="PH", study_instance_uid=high,
                                                study_description="CT Head", study_date="20240510"),
                                [head(ctdivol_mgy=100.0, dlp_mgycm=1200.0, dose_check=CHECK)],
                                series_uid=generate_uid(), sop_uid=generate_uid())  # fmt: skip
    assert ingest_files(cfg, [R.save(ds, tmp_path / "high" / "ct2.dcm")])[0]["status"] == "ingested"
    assert sql(conn, "SELECT count(*) FROM dose.alert_firing")[0][0] == before == 9
    # `nmdose alerts evaluate` on stored studies: a rule added later fires on the studies already there
    store.upsert_rule(conn, {"name": "late dlp>500", "kind": "dlp_above", "threshold": 500})
    assert store.evaluate_stored(conn) == 4 and store.evaluate_stored(conn) == 0
    # scopes: the scanner the ingest resolved (sql/016), the standard name (sql/015; set here by hand)
    ((scanner,),) = sql(conn, "SELECT scanner_id FROM dose.study WHERE study_instance_uid = %s", (high,))
    assert scanner is not None
    sql(conn, "UPDATE dose.study SET scanner_id = NULL WHERE study_instance_uid <> %s", (high,))
    sql(conn, "UPDATE dose.study SET standard_name = 'CT head routine' WHERE study_instance_uid = %s", (low,))
    store.upsert_rule(
        conn, {"name": "this scanner", "kind": "dlp_above", "threshold": 1, "scanner_id": scanner}
    )
    store.upsert_rule(conn, {"name": "head routine", "kind": "dlp_above", "threshold": 1,
                             "standard_name": "ct HEAD routine"})  # fmt: skip
    assert store.evaluate_stored(conn) == 2
    got = fired(conn)
    assert (got["this scanner"], got["head routine"]) == ([high], [low])


def test_a_failing_rule_never_loses_the_dose_record(cfg, conn, tmp_path):
    store.upsert_rule(conn, {"name": "dlp>1", "kind": "dlp_above", "threshold": 1})
    # a rule the checks would refuse (no window, no count), written behind their back: its evaluation breaks, the
    # study's alerts are rolled back (logged) and its dose rows stay
    sql(conn, "INSERT INTO dose.alert_rule (name, kind) VALUES ('broken', 'patient_studies')")
    uid, files = ct_study(tmp_path / "s", events=[R.CtAcquisition(dlp_mgycm=300.0)])
    assert {o["status"] for o in ingest_files(cfg, files)} == {"ingested"}
    assert sql(conn, "SELECT count(*) FROM dose.study WHERE study_instance_uid = %s", (uid,))[0][0] == 1
    assert (
        sql(conn, "SELECT count(*) FROM dose.alert_firing WHERE study_instance_uid = %s", (uid,))[0][0] == 0
    )


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list = []
    status = 204

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    _Hook.status = 204
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", _Hook
    server.shutdown()
    server.server_close()


def settings_for(port, ca_file, **sender):
    return AlertSettings.model_validate({
        "smtp": {"host": "127.0.0.1", "port": port, "security": "starttls", "ca_file": str(ca_file),
                 "sender": "nmdose@test.local", "timeout_s": 5},
        "sender": {"retry_base_s": 30, **sender},
        "page_url": "https://rpacs.test/nmdose/ui/alerts",
    })  # fmt: skip


def test_email_over_starttls_with_auth_and_the_webhook_each_sent_once(
    cfg, conn, tmp_path, webhook, monkeypatch
):
    url, hook = webhook
    smtp = sink.start(tmp_path / "sink")
    try:
        monkeypatch.setenv("NMDOSE_SMTP_USERNAME", smtp.username)  # the secret store (environment, dev)
        monkeypatch.setenv("NMDOSE_SMTP_PASSWORD", smtp.password)
        store.upsert_rule(conn, {"name": "dose check to physics", "kind": "dose_check",
                                 "email_to": ["physics@test.local", "rso@test.local"], "webhook_url": url})  # fmt: skip
        uid, files = ct_study(tmp_path / "s", pid="PX", events=[R.CtAcquisition(dose_check=CHECK)])
        ingest_files(cfg, files)
        stats = outbox.drain(conn, cfg, settings_for(smtp.port, smtp.ca_file))
        assert (stats.sent, stats.errors) == (3, [])
        got = smtp.wait(2)
        assert sorted(r.rcpt_tos[0] for r in got) == ["physics@test.local", "rso@test.local"]
        assert all(r.tls and r.authenticated_as == "alerts" for r in got)
        msg = got[0].message
        assert msg["Subject"].startswith("[nmdose alert] dose check to physics: dose_check")
        text = msg.get_content()
        assert uid in text and "KIM^TECH" in text and "Large patient" in text and "PX" not in text
        assert "https://rpacs.test/nmdose/ui/alerts" in text
        ((headers, payload),) = hook.received
        assert (
            payload["alerts"][0]["study_instance_uid"] == uid and payload["alerts"][0]["kind"] == "dose_check"
        )
        assert headers["Idempotency-Key"] == payload["id"]
        assert sql(conn, "SELECT state, attempts FROM dose.alert_delivery ORDER BY id") == [("sent", 1)] * 3
        # sent once: another pass sends nothing
        assert outbox.drain(conn, cfg, settings_for(smtp.port, smtp.ca_file)).sent == 0
        assert len(smtp.received) == 2 and len(hook.received) == 1
    finally:
        smtp.stop()


def test_smtp_down_then_retried_and_a_dead_senders_delivery_resumed(
    cfg, conn, tmp_path, webhook, monkeypatch
):
    url, hook = webhook
    monkeypatch.setenv("NMDOSE_SMTP_USERNAME", "alerts")
    monkeypatch.setenv("NMDOSE_SMTP_PASSWORD", "sink-password")
    port = sink.free_port()
    ca = sink.make_certificate(tmp_path / "unused")[0]
    store.upsert_rule(conn, {"name": "dlp>100", "kind": "dlp_above", "threshold": 100,
                             "email_to": ["physics@test.local"], "webhook_url": url})  # fmt: skip
    hook.status = 503  # the webhook's server answers an error too
    uid, files = ct_study(tmp_path / "s", events=[R.CtAcquisition(dlp_mgycm=300.0)])
    ingest_files(cfg, files)
    stats = outbox.drain(conn, cfg, settings_for(port, ca))
    assert (stats.sent, stats.retried, stats.failed) == (0, 2, 0)
    rows = sql(conn, """SELECT channel, state, attempts, last_error, next_attempt_at > now() + interval '20 s'
                          FROM dose.alert_delivery ORDER BY channel""")  # fmt: skip
    assert [(c, s, a, later) for c, s, a, _e, later in rows] == [("email", "pending", 1, True),
                                                                  ("webhook", "pending", 1, True)]  # fmt: skip
    assert "ConnectionRefusedError" in rows[0][3] and "HTTP 503" in rows[1][3]
    assert outbox.drain(conn, cfg, settings_for(port, ca)).sent == 0  # not due yet: nothing tried
    # the server is back, the retry time has come: both go, once
    smtp = sink.start(tmp_path / "sink", port=port)
    hook.status = 204
    try:
        sql(conn, "UPDATE dose.alert_delivery SET next_attempt_at = now()")
        stats = outbox.drain(conn, cfg, settings_for(port, smtp.ca_file))
        assert (stats.sent, stats.errors) == (2, [])
        assert len(smtp.wait(1)) == 1 and uid in smtp.received[0].message.get_content()
        assert (
            sql(conn, "SELECT state, attempts FROM dose.alert_delivery ORDER BY channel") == [("sent", 2)] * 2
        )
        # a sender that died while sending: its lease runs out and the delivery is sent by the next pass
        uid2, files2 = ct_study(tmp_path / "s2", events=[R.CtAcquisition(dlp_mgycm=400.0)])
        ingest_files(cfg, files2)
        sql(conn, """UPDATE dose.alert_delivery SET state = 'sending', attempts = 1,
                         lease_until = now() - interval '1 s' WHERE state = 'pending'""")  # fmt: skip
        stats = outbox.drain(conn, cfg, settings_for(port, smtp.ca_file))
        assert (stats.reclaimed, stats.sent) == (2, 2)
        assert uid2 in smtp.wait(2)[1].message.get_content()
    finally:
        smtp.stop()


def test_max_attempts_then_failed_with_the_reason(cfg, conn, tmp_path, monkeypatch):
    monkeypatch.delenv("NMDOSE_SMTP_USERNAME", raising=False)
    store.upsert_rule(
        conn, {"name": "dlp>100", "kind": "dlp_above", "threshold": 100, "email_to": ["a@test.local"]}
    )
    ingest_files(cfg, ct_study(tmp_path / "s", events=[R.CtAcquisition(dlp_mgycm=300.0)])[1])
    settings = AlertSettings.model_validate({"sender": {"max_attempts": 2}})  # no SMTP host configured
    for _ in range(2):
        outbox.drain(conn, cfg, settings)
        sql(conn, "UPDATE dose.alert_delivery SET next_attempt_at = now()")
    ((state, attempts, error),) = sql(conn, "SELECT state, attempts, last_error FROM dose.alert_delivery")
    assert (state, attempts) == ("failed", 2) and "smtp.host" in error
    rows, total = store.firings(conn, state="open")
    assert total == 1 and rows[0]["deliveries_failed"] == 1 and "smtp.host" in rows[0]["delivery_error"]


def test_digest_batches_the_firings_of_an_interval_into_one_message(cfg, conn, tmp_path, monkeypatch):
    smtp = sink.start(tmp_path / "sink")
    try:
        monkeypatch.setenv("NMDOSE_SMTP_USERNAME", smtp.username)
        monkeypatch.setenv("NMDOSE_SMTP_PASSWORD", smtp.password)
        store.upsert_rule(conn, {"name": "dlp>100 digest", "kind": "dlp_above", "threshold": 100, "digest": True,
                                 "digest_interval_s": 600, "email_to": ["physics@test.local"]})  # fmt: skip
        uids = []
        for i in range(3):
            uid, files = ct_study(
                tmp_path / f"s{i}", pid=f"D{i}", events=[R.CtAcquisition(dlp_mgycm=200.0 + i)]
            )
            ingest_files(cfg, files)
            uids.append(uid)
        settings = settings_for(smtp.port, smtp.ca_file)
        assert outbox.drain(conn, cfg, settings).sent == 0  # the interval has not passed
        sql(conn, "UPDATE dose.alert_delivery SET created_at = now() - interval '11 minutes'")
        assert outbox.drain(conn, cfg, settings).sent == 3
        (only,) = smtp.wait(1)
        assert only.message["Subject"] == "[nmdose alert digest] 3 alerts"
        assert all(u in only.message.get_content() for u in uids)
        assert outbox.drain(conn, cfg, settings).sent == 0 and len(smtp.received) == 1
    finally:
        smtp.stop()


def test_acknowledge_and_the_listing(cfg, conn, tmp_path):
    store.upsert_rule(conn, {"name": "dlp>100", "kind": "dlp_above", "threshold": 100})
    for i in range(3):
        ingest_files(
            cfg, ct_study(tmp_path / f"s{i}", pid=f"A{i}", events=[R.CtAcquisition(dlp_mgycm=300.0)])[1]
        )
    rows, total = store.firings(conn, state="open", limit=2)
    assert (len(rows), total) == (2, 3)
    got = store.acknowledge(conn, rows[0]["id"], "kim", "reviewed: obese patient")
    assert (got["acknowledged_by"], got["ack_comment"]) == ("kim", "reviewed: obese patient")
    assert store.firings(conn, state="open")[1] == 2 and store.firings(conn, state="acknowledged")[1] == 1
    assert store.acknowledge(conn, 10**9, "kim", "") is None
    today = dt.date.today()
    assert store.firings(conn, state="all", date_from=today, date_to=today)[1] == 3
    assert store.firings(conn, state="all", date_to=today - dt.timedelta(days=1))[1] == 0


# ----- the routes in keycloak mode: permissions per route, who from the token, audited


def test_routes_acknowledge_with_alerts_ack_only_and_rules_with_config_write(cfg, conn, tmp_path, issuer):  # noqa: F811
    from types import SimpleNamespace

    from nmdose.audit import routes as audit_routes
    from nmdose.auth import KeycloakAuth
    from nmdose.web import pages
    from nmdose.web.router import Request, Router
    from tests.unit.test_auth import accounts, token

    router = Router(KeycloakAuth(accounts(issuer)))
    pages.register_routes(router, SimpleNamespace(cfg=cfg))
    plugin = SimpleNamespace(router=router, cfg=cfg)
    assert audit_routes.install(plugin)

    def call(method, path, roles, body=None, **query):
        headers = {
            "authorization": f"Bearer {token(issuer, roles=roles)}",
            "content-type": "application/json",
        }
        data = json.dumps(body).encode() if body is not None else b""
        resp = router.dispatch(Request(method, path, query=query, headers=headers, body=data))
        return resp.status, (json.loads(resp.body) if resp.body else None)

    rule = {"name": "web dlp>100", "kind": "dlp_above", "threshold": 100, "email_to": ["physics@test.local"]}
    assert call("POST", "/api/alerts/rules", ["nmdose-technologist"], rule)[0] == 403
    status, saved = call("POST", "/api/alerts/rules", ["nmdose-admin"], rule)
    assert status == 201 and saved["threshold"] == 100
    bad = call("POST", "/api/alerts/rules", ["nmdose-admin"], {"name": "x", "kind": "dlp_above"})
    assert bad[0] == 400 and "threshold: required for a dlp_above rule" in bad[1]["error"]
    uid, files = ct_study(tmp_path / "s", events=[R.CtAcquisition(dlp_mgycm=300.0)])
    ingest_files(cfg, files)
    status, body = call("GET", "/api/alerts/firings", ["nmdose-technologist"])
    assert status == 200 and body["total"] == 1 and body["rows"][0]["study_instance_uid"] == uid
    firing = body["rows"][0]["id"]
    path = f"/api/alerts/firings/{firing}/ack"
    assert call("POST", path, ["nmdose-technologist"], {"comment": "seen"})[0] == 403
    assert sql(conn, "SELECT acknowledged_at FROM dose.alert_firing WHERE id = %s", (firing,)) == [(None,)]
    status, body = call("POST", path, ["nmdose-physicist"], {"comment": "obese patient; protocol checked"})
    assert status == 200 and body["acknowledged_by"] == "kim"
    assert sql(
        conn, "SELECT acknowledged_by, ack_comment FROM dose.alert_firing WHERE id = %s", (firing,)
    ) == [("kim", "obese patient; protocol checked")]
    assert call("POST", "/api/alerts/firings/999999999/ack", ["nmdose-physicist"], {})[0] == 404
    assert call("POST", "/api/alerts/firings/x/ack", ["nmdose-physicist"], {})[0] == 400
    assert call("GET", "/api/alerts/firings", ["nmdose-physicist"], state="open")[1]["total"] == 0
    assert call("DELETE", f"/api/alerts/rules/{saved['id']}", ["nmdose-physicist-none"])[0] == 403
    assert call("DELETE", f"/api/alerts/rules/{saved['id']}", ["nmdose-admin"])[0] == 200
    assert sql(conn, "SELECT count(*) FROM dose.alert_firing")[0][0] == 0
    assert plugin.audit_writer.flush(20)
    plugin.audit_writer.stop()
    rows = sql(conn, """SELECT method, status, outcome, permission, study_uids FROM audit.event
                         WHERE action LIKE '/api/alerts/%%' ORDER BY id""")  # fmt: skip
    acks = [r for r in rows if r[3] == "alerts:ack"]
    assert [(m, s, o) for m, s, o, _p, _u in acks] == [("POST", 403, "denied"), ("POST", 200, "success"),
                                                       ("POST", 404, "failure"), ("POST", 400, "failure")]  # fmt: skip
    reads = [r for r in rows if r[0] == "GET" and r[1] == 200]
    assert uid in reads[0][4]  # the read of the alerts names the studies it showed


def test_the_command_line_lists_and_acknowledges_with_audit_rows(stack, tmp_path, capsys):
    from nmdose.cli import main
    from tests.support import query

    tag = generate_uid()[-8:]
    with contextlib.closing(connect(stack.cfg)) as c:
        rule = store.upsert_rule(c, {"name": f"cli dlp {tag}", "kind": "dlp_above", "threshold": 9000})
    try:
        uid, files = ct_study(tmp_path / "s", pid=f"CLI{tag}", events=[R.CtAcquisition(dlp_mgycm=9500.0)])
        ingest_files(stack.cfg, files)
        (firing,) = query(stack.cfg, "SELECT id FROM dose.alert_firing WHERE rule_id = %s", (rule["id"],))[0]
        assert main([*stack.cli_args(), "alerts", "list", "--state", "all", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert uid in [r["study_instance_uid"] for r in listed["rows"]]
        assert main([*stack.cli_args(), "alerts", "ack", str(firing), "--comment", "cli check"]) == 0
        assert query(stack.cfg, "SELECT ack_comment FROM dose.alert_firing WHERE id = %s", (firing,)) == [
            ("cli check",)
        ]
        assert main([*stack.cli_args(), "alerts", "ack", "999999999"]) != 0  # no such alert: an error
        rows = query(stack.cfg, """SELECT action, source, outcome, study_uids FROM audit.event
                                    WHERE action LIKE 'alerts %%' AND %s = ANY(study_uids) ORDER BY id""", (uid,))  # fmt: skip
        assert [(a, s, o) for a, s, o, _u in rows] == [("alerts list", "cli", "success"),
                                                       ("alerts ack", "cli", "success")]  # fmt: skip
    finally:
        with contextlib.closing(connect(stack.cfg)) as c:
            store.delete_rule(c, rule["id"])
