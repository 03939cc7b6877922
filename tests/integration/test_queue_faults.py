"""Retrieval under faults on the real stack (issue 14 items 7, 8, 11): a source outage costs no study an attempt,
PostgreSQL restarted during a long C-MOVE leaves the job `done` without a plugin restart, `retrieve run` waits
for (or reports) the jobs the plugin's workers hold, a job nobody holds any more shows on /nmdose/health, and a
job whose holders keep dying ends `failed` with the reason on its retrieval row."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from datetime import date
from pathlib import Path

import pytest
import requests

from nmdose.cli import main
from nmdose.db import DatabaseUnreachable, connect, queue
from nmdose.pacs.orthanc_http import OrthancHttp
from nmdose.retrieve import runner
from nmdose.retrieve.mover import received_series
from nmdose.simulate import generate
from nmdose.simulate.upload import upload
from tests.support import RunningStack

pytestmark = pytest.mark.integration

RETRIEVE = {
    "retry": {"max_attempts": 3, "backoff_s": 0.5, "backoff_max_s": 2},
    "concurrency": 2,
    "time_window": {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    running = RunningStack(retrieve=RETRIEVE)
    out = Path(tmp_path_factory.mktemp("sim"))
    manifest = generate(out, studies=16, years=2, seed=41, today=date(2026, 6, 30))
    upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
    rest = OrthancHttp(running.cfg.research_node.http_url, name="researchPACS", timeout_s=60)
    yield running, manifest, rest
    running.close()


def queue_studies(cfg, studies) -> None:
    with contextlib.closing(connect(cfg)) as conn:
        runner.queue_studies(
            conn,
            [runner.Target(s.study_uid, cfg.source_node.name, s.instances) for s in studies],
            max_attempts=3,
        )


def rows(cfg, uids) -> dict[str, tuple]:
    """uid -> (retrieval state, queue state, queue attempts, retrieval last_error)."""
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT r.study_instance_uid, r.state, q.state, q.attempts, r.last_error FROM rpacs.retrieval r
                 JOIN jobs.queue q ON q.kind = 'retrieve' AND q.key = r.study_instance_uid
                WHERE r.study_instance_uid = ANY(%s)""",
            (list(uids),),
        )
        return {uid: rest for uid, *rest in cur.fetchall()}


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(DatabaseUnreachable):
            value = predicate()
            if value:
                return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def frozen(running: RunningStack, name: str):
    """The node's process stopped (SIGSTOP): it accepts connections and answers nothing, like a slow PACS."""
    pid = int(running.stack.pid_file(name).read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def move_events(cfg, uids) -> int:
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM rpacs.retrieval_event WHERE step = 'move' AND study_instance_uid = ANY(%s)",
            (list(uids),),
        )
        return cur.fetchone()[0]


def test_a_seven_second_source_outage_costs_no_study_an_attempt(env):
    running, manifest, rest = env
    batch = manifest.studies[:8]
    uids = [s.study_uid for s in batch]
    running.stack.orthanc_down("simulationPACS", sig=signal.SIGKILL)
    try:
        queue_studies(running.cfg, batch)
        worker = threading.Thread(target=lambda: runner.run(running.cfg, wait_s=90))
        worker.start()
        time.sleep(7)
    finally:
        running.stack.orthanc_up("simulationPACS")
    worker.join(120)
    wait_for(lambda: {r[0] for r in rows(running.cfg, uids).values()} == {"done"}, 90, "every study done")
    for uid, (state, job_state, attempts, _) in rows(running.cfg, uids).items():
        assert (state, job_state, attempts) == ("done", "done", 1), uid  # the outage used no attempt
    for s in batch:
        assert sum(received_series(rest, s.study_uid).values()) == s.instances


def test_postgresql_restarted_during_a_long_c_move_the_plugins_job_ends_done(env):
    running, manifest, rest = env
    (study,) = manifest.studies[8:9]
    with frozen(running, "simulationPACS"):  # the C-MOVE hangs on the source: a long move
        queue_studies(running.cfg, [study])
        wait_for(lambda: rows(running.cfg, [study.study_uid])[study.study_uid][0] == "moving", 30, "the move")
        running.stack.postgres_down()
        running.stack.postgres_up()
    wait_for(
        lambda: rows(running.cfg, [study.study_uid])[study.study_uid][1] in ("done", "failed"),
        120,
        "the plugin's job to end (no plugin restart)",
    )
    state, job_state, attempts, error = rows(running.cfg, [study.study_uid])[study.study_uid]
    assert (state, job_state, attempts) == ("done", "done", 1), error
    assert sum(received_series(rest, study.study_uid).values()) == study.instances


def test_retrieve_run_waits_for_the_plugins_jobs_or_says_what_is_left(env, capsys):
    running, manifest, rest = env
    (study,) = manifest.studies[9:10]
    args = [*running.cli_args(), "retrieve", "run"]
    with frozen(running, "simulationPACS"):
        queue_studies(running.cfg, [study])
        wait_for(lambda: rows(running.cfg, [study.study_uid])[study.study_uid][0] == "moving", 30, "the move")
        capsys.readouterr()
        assert main([*args, "--wait", "1"]) == 3  # the plugin still holds it: unfinished, not success
        out = capsys.readouterr().out
        assert "1 studies still running elsewhere (held by researchPACS-worker-" in out
        assert main([*args, "--drain"]) == 0  # asked to run only what is ready: nothing was
    assert main(args) == 0  # waits for the plugin's job, which ends done
    assert rows(running.cfg, [study.study_uid])[study.study_uid][:2] == ["done", "done"]
    assert sum(received_series(rest, study.study_uid).values()) == study.instances


def test_a_job_held_past_its_lease_makes_health_degraded_until_it_is_taken_back(env):
    running, _, _ = env
    url = f"{running.cfg.research_node.http_url}/nmdose/health"
    with contextlib.closing(connect(running.cfg)) as conn:
        queue.enqueue(conn, "nobody-runs-this", "ghost-job")
        queue.claim(conn, ["nobody-runs-this"], "ghost-worker", lease_s=0.1)
    time.sleep(0.3)
    health = requests.get(url, timeout=30).json()
    assert health["status"] == "degraded"
    (problem,) = [p for p in health["problems"] if "ghost-job" in p]
    assert "running past its lease" in problem and "ghost-worker" in problem
    with contextlib.closing(connect(running.cfg)) as conn:
        taken = queue.reclaim_expired(conn, ["nobody-runs-this"])
        assert [r.job.key for r in taken] == ["ghost-job"]
    health = requests.get(url, timeout=30).json()
    assert not [p for p in health["problems"] if "ghost-job" in p]


def test_a_retrieval_whose_holders_die_ends_failed_with_the_reason_and_shows_in_status(env, capsys):
    running, manifest, _ = env
    (study,) = manifest.studies[10:11]
    with contextlib.closing(connect(running.cfg)) as conn:
        with conn.cursor() as cur:  # queued, and its last attempt held by a holder that died (lease expired)
            cur.execute(
                """INSERT INTO rpacs.retrieval (study_instance_uid, source_node, origin, expected_instances, state)
                   VALUES (%s, %s, 'manual', %s, 'moving')""",
                (study.study_uid, running.cfg.source_node.name, study.instances),
            )
            cur.execute(
                """INSERT INTO jobs.queue (kind, key, payload, state, attempts, max_attempts, locked_by, locked_at,
                                          lease_until, lease_token)
                   VALUES ('retrieve', %s, '{}', 'running', 3, 3, 'cli:elsewhere:1', now() - interval '2 seconds',
                           now() - interval '1 second', 'gone')""",
                (study.study_uid,),
            )
        conn.commit()
    time.sleep(0.3)
    capsys.readouterr()
    assert main([*running.cli_args(), "retrieve", "run", "--drain"]) == 1  # the run takes it back: dead
    state, job_state, attempts, error = rows(running.cfg, [study.study_uid])[study.study_uid]
    assert (state, job_state, attempts) == ("failed", "failed", 3)
    assert "cli:elsewhere:1 lost the job" in error and "no attempt left" in error
    assert main([*running.cli_args(), "retrieve", "status"]) == 0
    out = capsys.readouterr().out
    assert "failed" in out.split("queue:")[1]
    with contextlib.closing(connect(running.cfg)) as conn:
        assert runner.retry(conn, ("failed",)) >= 1  # the dead job can be queued again by hand
