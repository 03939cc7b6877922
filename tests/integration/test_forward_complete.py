"""Forwarding is complete or visibly not (issue 14, item 9 and the forward part of 11), on the real stack:
a study is never forwarded while its retrieval can still bring instances and is forwarded once it is final; a
study said forwarded that got an instance whose stable event was lost (the research PACS killed) is completed
by the start-up reconciliation; `forward pending`, `forward wait` and the stage's health problems show a study
whose forwarded set is incomplete; and the categories of the incomplete list, on a database of their own."""

import contextlib
import signal
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from psycopg2.extras import Json

from nmdose.cli import main
from nmdose.db import connect
from nmdose.forward import routes, runner
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.simulate import generate
from nmdose.simulate.upload import upload
from nmdose.workers import Deferred
from tests import support
from tests.integration.test_forward import (
    assert_dose_pacs_holds_exactly_the_selection,
    forward_states,
    held,
    times_sent,
    wait_forwarded,
)
from tests.support import RunningStack, scratch_database

pytestmark = pytest.mark.integration

STABLE_AGE_S = 4
RETRIEVE = {
    "retry": {"max_attempts": 4, "backoff_s": 0.5, "backoff_max_s": 2},
    "concurrency": 2,
    "time_window": {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    running = RunningStack(
        retrieve=RETRIEVE, nodes={"researchPACS": {"orthanc_settings": {"StableAge": STABLE_AGE_S}}}
    )
    try:
        out = Path(tmp_path_factory.mktemp("sim"))
        manifest = generate(out, studies=12, years=2, seed=57, today=date(2026, 6, 30))
        upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
        research = OrthancHttp(running.cfg.research_node.http_url, name="researchPACS", timeout_s=60)
        dose = OrthancHttp(running.cfg.dose_node.http_url, name="dosePACS", timeout_s=60)
        # studies with a dose report series and images: each test takes its own
        studies = [s for s in manifest.studies if s.dose_objects and len(s.series) >= 2]
        yield SimpleNamespace(
            running=running, cfg=running.cfg, out=out, studies=studies, research=research, dose=dose
        )
    finally:
        running.close()


def files(env, study, *, dose_reports: bool) -> list[Path]:
    """The study's files: its dose report series (folders NNN_SR) or every other series."""
    root = env.out / study.path
    return sorted(
        f
        for folder in root.iterdir()
        if folder.name.endswith("_SR") == dose_reports
        for f in folder.glob("*.dcm")
    )


def store(rest: OrthancHttp, paths: list[Path]) -> None:
    """Instances arriving in the research PACS (what a C-MOVE brings), through its REST API."""
    for path in paths:
        response = rest.session.post(f"{rest.base}/instances", data=path.read_bytes(), timeout=60)
        assert response.status_code == 200, response.text


def queue_retrieval(env, study, state: str, *, job: str | None, not_before_s: float = 0) -> None:
    """The study's rpacs.retrieval row (as the retrieval stage writes it) and its `retrieve` job."""
    with contextlib.closing(connect(env.cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO rpacs.retrieval (study_instance_uid, source_node, origin, state, expected_instances)
               VALUES (%s, %s, 'manual', %s, %s)""",
            (study.study_uid, env.cfg.source_node.name, state, study.instances),
        )
        if job is not None:
            cur.execute(
                """INSERT INTO jobs.queue (kind, key, payload, max_attempts, state, not_before)
                   VALUES ('retrieve', %s, %s, 4, %s, now() + make_interval(secs => %s))""",
                (
                    study.study_uid,
                    Json({"source": env.cfg.source_node.name, "expected": study.instances}),
                    job,
                    not_before_s,
                ),
            )
        conn.commit()


def sql(env, query: str, params=()) -> list[tuple]:
    with contextlib.closing(connect(env.cfg)) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows


def pending_row(env, uid: str) -> dict | None:
    with contextlib.closing(connect(env.cfg)) as conn:
        return next((r for r in runner.pending(conn) if r["study_instance_uid"] == uid), None)


def wait_for(predicate, timeout_s: float = 90):
    return support.wait_for(predicate, timeout_s, 0.5)


def test_a_study_whose_retrieval_is_not_finished_is_not_forwarded_until_it_is(env):
    s = env.studies[0]
    dose_uids = {d.sop_uid for d in s.dose_objects}
    # an interrupted C-MOVE: the retrieval waits for its next attempt; all but the dose report arrived
    queue_retrieval(env, s, "pending", job="pending", not_before_s=3600)
    store(env.research, files(env, s, dose_reports=False))
    time.sleep(STABLE_AGE_S + 8)  # the study became stable: its forward job ran, and must have waited
    assert forward_states(env.cfg, [s.study_uid]) == {s.study_uid: "pending"}
    assert held(env.dose, s.study_uid) == {}
    row = pending_row(env, s.study_uid)
    assert row is not None and "waiting for its retrieval (pending)" in row["reason"], row
    assert not row["stuck"]
    # the retrieval's next attempt: it moves the missing dose report and finishes; the forward follows
    sql(env, "UPDATE jobs.queue SET not_before = now() WHERE kind = 'retrieve' AND key = %s", (s.study_uid,))
    assert wait_for(
        lambda: (
            sql(env, "SELECT state FROM rpacs.retrieval WHERE study_instance_uid = %s", (s.study_uid,))[0][0]
            == "done"
        )
    )
    assert wait_forwarded(env.cfg, [s.study_uid]) == {s.study_uid: "done"}
    assert_dose_pacs_holds_exactly_the_selection(env.dose, s)
    assert dose_uids <= set(held(env.dose, s.study_uid))
    assert set(times_sent(env.cfg, [s.study_uid])) == {1}
    assert pending_row(env, s.study_uid) is None


def test_a_partial_retrieval_still_retrying_is_not_forwarded_but_one_out_of_attempts_is(env):
    s = env.studies[1]
    queue_retrieval(env, s, "partial", job="pending", not_before_s=3600)
    store(env.research, files(env, s, dose_reports=False))
    time.sleep(STABLE_AGE_S + 8)
    assert forward_states(env.cfg, [s.study_uid]) == {s.study_uid: "pending"}
    assert held(env.dose, s.study_uid) == {}
    # its attempts are used up: the retrieval is final, what it brought is forwarded (the dose report never
    # arrived: the images' samples go)
    sql(
        env,
        "UPDATE jobs.queue SET state = 'failed', finished_at = now() WHERE kind = 'retrieve' AND key = %s",
        (s.study_uid,),
    )
    assert wait_forwarded(env.cfg, [s.study_uid], timeout_s=60) == {s.study_uid: "done"}
    got = held(env.dose, s.study_uid)
    assert got and not ({d.sop_uid for d in s.dose_objects} & set(got))


def test_a_forwarded_study_whose_new_instance_lost_its_stable_event_is_completed_at_start(env):
    s = env.studies[2]
    dose_uids = {d.sop_uid for d in s.dose_objects}
    # retrieved (final), forwarded while the dose report was not in the research PACS yet
    queue_retrieval(env, s, "done", job=None)
    store(env.research, files(env, s, dose_reports=False))
    assert wait_forwarded(env.cfg, [s.study_uid]) == {s.study_uid: "done"}
    assert not dose_uids & set(held(env.dose, s.study_uid))
    # the dose report arrives, and the research PACS is killed before the study is stable again
    store(env.research, files(env, s, dose_reports=True))
    env.running.stack.orthanc_down("researchPACS", sig=signal.SIGKILL)
    assert forward_states(env.cfg, [s.study_uid]) == {s.study_uid: "done"}
    env.running.stack.orthanc_up("researchPACS")
    # the start-up reconciliation sees the study changed since its plan, and the forward completes it
    assert wait_for(lambda: dose_uids <= set(held(env.dose, s.study_uid)), timeout_s=90)
    assert wait_forwarded(env.cfg, [s.study_uid]) == {s.study_uid: "done"}
    assert_dose_pacs_holds_exactly_the_selection(env.dose, s)
    assert set(times_sent(env.cfg, [s.study_uid])) == {1}
    ((trigger, missing, fingerprint),) = sql(
        env,
        "SELECT trigger, missing, research_fingerprint FROM rpacs.forward_study WHERE study_instance_uid = %s",
        (s.study_uid,),
    )
    assert missing == 0 and fingerprint
    assert pending_row(env, s.study_uid) is None


def test_pending_wait_and_health_show_a_study_whose_forwarded_set_is_incomplete(env, capsys):
    running = env.running
    s = env.studies[3]
    # retrieved, then removed from the research PACS by hand before it was forwarded: the forward fails for good
    queue_retrieval(env, s, "done", job=None)
    assert main([*running.cli_args(), "forward", "study", s.study_uid, "--json"]) == 1
    assert forward_states(env.cfg, [s.study_uid]) == {s.study_uid: "failed"}
    # forward wait ends: nothing can progress, the stuck study is listed, exit 1
    started = time.monotonic()
    assert main([*running.cli_args(), "forward", "wait", "--timeout", "120"]) == 1
    assert time.monotonic() - started < 30
    out = capsys.readouterr().out
    assert "no progress possible" in out and s.study_uid in out and "stuck" in out
    capsys.readouterr()
    assert main([*running.cli_args(), "forward", "pending", "--json"]) == 0
    out = capsys.readouterr().out
    assert s.study_uid in out and "research PACS has no study" in out
    row = pending_row(env, s.study_uid)
    assert row["stuck"] and row["state"] == "failed"
    plugin = OrthancHttp(running.cfg.research_node.http_url + "/nmdose")
    assert s.study_uid in {r["study_instance_uid"] for r in plugin.get("/forward/pending")}
    web = plugin.get("/api/research/forward-incomplete")["rows"]
    assert [r["reason"] for r in web if r["study_instance_uid"] == s.study_uid] == [row["reason"]]
    problems = routes.health_problems(SimpleNamespace(cfg=env.cfg))
    assert problems == ["1 studies with an incomplete forwarded set (nmdose forward pending)"], problems
    # once the study is dealt with (here: its rows removed), wait returns 0 and health has no problem
    sql(env, "DELETE FROM rpacs.forward_study WHERE study_instance_uid = %s", (s.study_uid,))
    sql(env, "DELETE FROM rpacs.retrieval WHERE study_instance_uid = %s", (s.study_uid,))
    sql(env, "DELETE FROM jobs.queue WHERE kind = 'forward' AND key = %s", (s.study_uid,))
    assert main([*running.cli_args(), "forward", "wait", "--timeout", "60"]) == 0
    assert routes.health_problems(SimpleNamespace(cfg=env.cfg)) == []


def test_wait_ends_at_its_timeout_listing_a_study_still_waiting_for_its_retrieval(env, capsys):
    s = env.studies[4]
    queue_retrieval(env, s, "moving", job="running")  # a retrieval that never ends (its holder hangs)
    store(env.research, files(env, s, dose_reports=False))
    assert wait_for(lambda: forward_states(env.cfg, [s.study_uid]), timeout_s=30)
    started = time.monotonic()
    assert main([*env.running.cli_args(), "forward", "wait", "--timeout", "8"]) == 1
    assert time.monotonic() - started < 20
    out = capsys.readouterr().out
    assert "after 8 s" in out and s.study_uid in out and "waiting for its retrieval (moving)" in out
    assert held(env.dose, s.study_uid) == {}
    # the retrieval is abandoned (its job ended): the study is forwarded as it is
    sql(env, "UPDATE jobs.queue SET state = 'failed' WHERE kind = 'retrieve' AND key = %s", (s.study_uid,))
    assert wait_forwarded(env.cfg, [s.study_uid], timeout_s=60) == {s.study_uid: "done"}


def test_a_study_whose_retrieval_brought_more_after_its_forward_is_replanned_by_the_plugin(env):
    s = env.studies[5]
    dose_uids = {d.sop_uid for d in s.dose_objects}
    # a retrieval that ran out of attempts (final): what it brought is forwarded, without the dose report
    queue_retrieval(env, s, "failed", job=None)
    store(env.research, files(env, s, dose_reports=False))
    assert wait_forwarded(env.cfg, [s.study_uid]) == {s.study_uid: "done"}
    assert not dose_uids & set(held(env.dose, s.study_uid))
    # retried by hand, it brings the dose report, and the stable event that follows is lost (here: it comes while
    # the study has no retrieval row, so the stage skips it); the retrieval then says done, after the plan
    sql(env, "DELETE FROM rpacs.retrieval WHERE study_instance_uid = %s", (s.study_uid,))
    store(env.research, files(env, s, dose_reports=True))
    time.sleep(STABLE_AGE_S + 4)
    assert forward_states(env.cfg, [s.study_uid]) == {s.study_uid: "done"}
    queue_retrieval(env, s, "done", job=None)
    # the plugin's periodic reconciliation (every 30 s) finds the retrieval newer than the plan: re-planned
    assert wait_for(lambda: dose_uids <= set(held(env.dose, s.study_uid)), timeout_s=90)
    assert wait_forwarded(env.cfg, [s.study_uid]) == {s.study_uid: "done"}
    assert_dose_pacs_holds_exactly_the_selection(env.dose, s)
    assert set(times_sent(env.cfg, [s.study_uid])) == {1}
    ((trigger, missing),) = sql(
        env, "SELECT trigger, missing FROM rpacs.forward_study WHERE study_instance_uid = %s", (s.study_uid,)
    )
    assert (trigger, missing) == ("reconcile", 0)
    assert pending_row(env, s.study_uid) is None


def test_incomplete_categories_and_what_the_reconciliation_queues_on_a_database_of_its_own(env):
    with scratch_database(env.cfg, "fwd_incomplete") as cfg, contextlib.closing(connect(cfg)) as conn:
        cur = conn.cursor()

        def study(uid, *, forward=None, trigger="stable", planned_ago=None, job=None, job_due_s=0,
                  job_error=None, attempts=0, retrieval=None, retrieval_ago=0, retrieve_job=None, received=None):  # fmt: skip
            if retrieval:
                cur.execute(
                    """INSERT INTO rpacs.retrieval (study_instance_uid, source_node, state, received_instances,
                              updated_at) VALUES (%s, 'src', %s, %s, now() - make_interval(secs => %s))""",
                    (uid, retrieval, received, retrieval_ago),
                )
            if retrieve_job:
                cur.execute(
                    "INSERT INTO jobs.queue (kind, key, state) VALUES ('retrieve', %s, %s)",
                    (uid, retrieve_job),
                )
            if forward:
                cur.execute(
                    """INSERT INTO rpacs.forward_study (study_instance_uid, destination, state, trigger, planned_at,
                              last_error) VALUES (%s, 'dosePACS', %s, %s, now() - make_interval(secs => %s), %s)""",
                    (uid, forward, trigger, planned_ago, job_error if forward == "failed" else None),
                )
            if job:
                cur.execute(
                    """INSERT INTO jobs.queue (kind, key, state, attempts, last_error, not_before)
                       VALUES ('forward', %s, %s, %s, %s, now() + make_interval(secs => %s))""",
                    (uid, job, attempts, job_error, job_due_s),
                )

        study(
            "r-pending",
            forward="pending",
            job="pending",
            job_due_s=100,
            job_error="retrieval not finished (pending)",
            retrieval="pending",
            retrieve_job="pending",
        )
        study("r-partial-live", retrieval="partial", retrieve_job="pending")
        study("r-partial-dead", forward="pending", job="pending", retrieval="partial", retrieve_job="failed")
        study("r-moving-nojob", retrieval="moving")
        study("done-ok", forward="done", planned_ago=0, job="done", retrieval="done", retrieval_ago=3600)
        study("done-stale", forward="done", planned_ago=3600, job="done", retrieval="done", retrieval_ago=60)
        study("done-selective", forward="done", trigger="selective", retrieval="done")
        study("orphan", forward="pending", retrieval="done", retrieval_ago=3600)
        study(
            "failed", forward="failed", job="failed", job_error="research PACS has no study", retrieval="done"
        )
        study("not-seen-old", retrieval="done", retrieval_ago=3600)
        study("not-seen-new", retrieval="done")
        study("not-seen-failed-empty", retrieval="failed", retrieval_ago=3600)
        study(
            "failing",
            forward="pending",
            job="pending",
            attempts=4,
            job_error="C-STORE to dosePACS failed",
            retrieval="done",
            retrieval_ago=3600,
        )
        study("released", forward="pending", job="pending", job_due_s=280,
              job_error="retrieval not finished (partial)", retrieval="done")  # fmt: skip
        conn.commit()

        assert runner.retrieval_check(conn, "r-pending").waiting == "retrieval not finished (pending)"
        assert runner.retrieval_check(conn, "r-partial-live").waiting == "retrieval not finished (partial)"
        for final in ("r-partial-dead", "r-moving-nojob", "done-ok", "failed", "no-retrieval-at-all"):
            assert runner.retrieval_check(conn, final).waiting is None, final

        rows = {r["study_instance_uid"]: r for r in runner.pending(conn)}
        category = {uid: (r["category"], r["stuck"]) for uid, r in rows.items()}
        assert category == {
            "r-pending": ("retrieval", False),
            "r-partial-dead": ("forwarding", False),
            "done-stale": ("stale", True),
            "orphan": ("orphan", True),
            "failed": ("failed", True),
            "not-seen-old": ("not_seen", True),
            "not-seen-new": ("not_seen", False),
            "failing": ("forwarding", False),
            "released": ("forwarding", False),
        }, category
        assert "waiting for its retrieval (pending)" in rows["r-pending"]["reason"]
        assert "changed after the forward was planned" in rows["done-stale"]["reason"]
        assert rows["failed"]["reason"] == "forward failed: research PACS has no study"
        assert rows["failing"]["reason"].startswith("retrying after 4 failed attempts")
        assert list(rows)[:4] == sorted(u for u, (_, stuck) in category.items() if stuck)  # stuck first
        assert runner.problem_counts(conn) == {"incomplete": 9, "stuck": 4, "failing": 1}

        assert runner.requeue_stale(cfg, conn) == 4  # done-stale, orphan, not-seen-old, released
        cur.execute(
            """SELECT key, state, not_before <= now() FROM jobs.queue WHERE kind = 'forward'
                AND key IN ('done-stale', 'orphan', 'not-seen-old', 'released', 'failed', 'r-pending')"""
        )
        assert {k: (st, due) for k, st, due in cur.fetchall()} == {
            "done-stale": ("pending", True),
            "orphan": ("pending", True),
            "not-seen-old": ("pending", True),
            "released": ("pending", True),
            "failed": ("failed", True),  # left for a person
            "r-pending": ("pending", False),  # still waiting for its retrieval
        }
        cur.execute("SELECT study_instance_uid, trigger FROM rpacs.forward_study WHERE trigger <> 'stable'")
        assert dict(cur.fetchall()) == {
            "done-stale": "reconcile",
            "orphan": "reconcile",
            "not-seen-old": "reconcile",
            "done-selective": "selective",
        }
        conn.commit()
        assert runner.problem_counts(conn) == {"incomplete": 9, "stuck": 1, "failing": 1}


def test_start_up_reconciliation_cost_on_a_few_hundred_studies(env):
    """The research PACS holds N studies the stage forwarded: the start-up reconciliation looks at each only
    through one listing of the research PACS and one query (figures printed)."""
    n = 300
    research = env.research
    created = []
    for i in range(n):
        answer = research.post(
            "/tools/create-dicom",
            {
                "Tags": {
                    "PatientID": f"RECON{i:04d}",
                    "StudyInstanceUID": f"1.2.826.0.1.3680043.10.1234.99.{i}",
                    "Modality": "CT",
                    "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7",
                },
                "Force": True,
            },
        )
        created.append(answer["ID"])
    uids = [f"1.2.826.0.1.3680043.10.1234.99.{i}" for i in range(n)]
    try:
        time.sleep(3)  # the studies' LastUpdate is before the plans below
        with scratch_database(env.cfg, "fwd_reconcile") as cfg, contextlib.closing(connect(cfg)) as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO rpacs.retrieval (study_instance_uid, source_node, state) VALUES (%s, 'src', 'done')",
                    [(u,) for u in uids],
                )
                # forwarded before plans recorded what they saw (rows of an older version)
                cur.executemany(
                    """INSERT INTO rpacs.forward_study (study_instance_uid, destination, state, planned_at,
                              started_at) VALUES (%s, 'dosePACS', 'done', now(), now())""",
                    [(u,) for u in uids],
                )
            conn.commit()
            first = runner.reconcile(cfg, research, conn)
            assert (first.candidates, first.adopted, first.total_queued) == (n, n, 0), first
            steady = runner.reconcile(cfg, research, conn)
            assert (steady.unchanged, steady.total_queued) == (n, 0), steady
            started = time.monotonic()
            counts = runner.problem_counts(conn)
            health_s = time.monotonic() - started
            assert counts["stuck"] == 0
            # three studies got an instance since (their stable event lost): only those are queued
            for i in (5, 50, 250):
                research.post(
                    "/tools/create-dicom",
                    {"Tags": {"PatientID": f"RECON{i:04d}", "StudyInstanceUID": uids[i], "Modality": "CT"},
                     "Force": True},
                )  # fmt: skip
            changed = runner.reconcile(cfg, research, conn)
            assert changed.queued == {"changed since planned": 3}, changed
            # the plugin's periodic job runs the same comparison (every FULL_RECONCILE_S): nothing new now
            periodic = runner.ReconcileJob(cfg, research, full_every_s=0)
            research.post(
                "/tools/create-dicom",
                {"Tags": {"PatientID": "RECON0007", "StudyInstanceUID": uids[7], "Modality": "CT"},
                 "Force": True},
            )  # fmt: skip
            with pytest.raises(Deferred):
                periodic(None)
            with conn.cursor() as cur:
                cur.execute("SELECT key FROM jobs.queue WHERE kind = 'forward' AND state = 'pending'")
                assert {r[0] for r in cur.fetchall()} == {uids[i] for i in (5, 7, 50, 250)}
            conn.commit()
            with conn.cursor() as cur:
                cur.execute("DELETE FROM rpacs.forward_study")
                cur.execute("DELETE FROM jobs.queue WHERE kind = 'forward'")
            conn.commit()
            never = runner.reconcile(cfg, research, conn)
            assert never.queued == {"never seen": n}, never
        print(
            f"\nstart-up reconciliation, {n} forwarded studies: first (adopting) {first.seconds:.3f} s, "
            f"unchanged {steady.seconds:.3f} s, 3 changed {changed.seconds:.3f} s, "
            f"{n} never seen (all queued) {never.seconds:.3f} s; health query {health_s * 1000:.1f} ms"
        )
    finally:
        for uid in uids:
            for study_id in research.post(
                "/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": uid}}
            ):
                research.delete(f"/studies/{study_id}")


def test_a_stable_event_that_arrives_while_postgresql_is_down_is_recorded_when_it_is_back(env):
    """Orthanc tells a study is stable once, from memory: the stage keeps the event until the database answers
    (before, the event was dropped and the study waited minutes for the periodic reconciliation)."""
    s = env.studies[6]
    queue_retrieval(
        env, s, "done", job="done"
    )  # only retrieved studies are forwarded (forward.only_retrieved)
    store(env.research, files(env, s, dose_reports=False))
    (orthanc_id,) = env.research.post(
        "/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": s.study_uid}}
    )
    plugin = SimpleNamespace(
        cfg=env.cfg,
        rest_client=lambda: OrthancHttp(env.cfg.research_node.http_url, name="researchPACS", timeout_s=60),
        workers=SimpleNamespace(wake=lambda: None),
    )
    stack = env.running.stack
    stack.postgres_down()
    try:
        routes.on_stable_study(plugin, orthanc_id)  # the database is away: kept, not raised, not lost
    finally:
        stack.postgres_up()
    assert wait_for(
        lambda: sql(env, "SELECT 1 FROM rpacs.forward_study WHERE study_instance_uid = %s", (s.study_uid,)),
        timeout_s=120,  # Orthanc's own index answers 503 for a while after PostgreSQL is back: tried again too
    )
