"""Queue leases against a real PostgreSQL (started for this module, nothing else): a worker killed with SIGKILL
while it holds a job, a job that kills its worker every time, two instances sharing the database, and a
PostgreSQL restart while a handler runs."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from nmdose.db import DatabaseUnreachable, ThreadLocalConnection, connect, queue
from nmdose.stack import Stack
from nmdose.workers import WorkerPool
from tests.support import REPO, load, make_config_dir, make_tempdir, scratch_database

pytestmark = pytest.mark.integration

LEASE_S = 1.0


@pytest.fixture(scope="module")
def pg():
    """A PostgreSQL of its own (restarted by some tests): the Stack that runs it."""
    root = make_tempdir("nmdose-queue-")
    cfg_dir = make_config_dir(root)
    stack = Stack(load(cfg_dir))
    stack.secure_var()
    stack.postgres_up()
    try:
        yield stack
    finally:
        stack.postgres_down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def db(pg):
    with scratch_database(pg.cfg, "queue") as cfg:
        yield cfg


def row(cfg, key: str) -> tuple:
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT state, attempts, locked_by, last_error FROM jobs.queue WHERE key = %s AND kind <> 'mark'",
            (key,),
        )
        return cur.fetchone()


def wait_for(predicate, timeout_s: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(DatabaseUnreachable):  # the test restarts PostgreSQL under its own feet
            value = predicate()
            if value:
                return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


CHILD = textwrap.dedent(
    """
    import dataclasses, os, signal, sys, time
    from pathlib import Path
    from nmdose.db import connect
    from nmdose.workers import WorkerPool
    from tests.support import load

    cfg_dir, database, behaviour, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    cfg = load(Path(cfg_dir))
    cfg = dataclasses.replace(cfg, postgresql=cfg.postgresql.model_copy(update={"database": database}))

    def handler(job):
        if behaviour == "hang":
            print("holding", job.key, flush=True)
            time.sleep(3600)
        os.kill(os.getpid(), signal.SIGKILL)  # "crash": the job kills its worker

    pool = WorkerPool(lambda: connect(cfg), {"test": handler}, threads=1, name=f"child-{os.getpid()}",
                      lease_s=float(os.environ["LEASE_S"]), backoff_s=0.1, backoff_max_s=0.2, poll_s=0.1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pool.start(exit_when_idle=True)
        pool.join()
        time.sleep(0.1)
    """
)


def child(cfg, behaviour: str, seconds: float = 30) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(cfg.config_dir), cfg.postgresql.database, behaviour, str(seconds)],
        cwd=REPO,
        env={**os.environ, "LEASE_S": str(LEASE_S)},
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_worker_killed_while_holding_a_job_is_taken_back_by_a_running_pool_and_the_attempt_counts(db):
    with contextlib.closing(connect(db)) as conn:
        queue.enqueue(conn, "test", "held", max_attempts=5)
    proc = child(db, "hang")
    ran = []
    pool = WorkerPool(lambda: connect(db), {"test": lambda job: ran.append(job)}, threads=1, lease_s=LEASE_S,
                      backoff_s=0.1, backoff_max_s=0.2, poll_s=0.1)  # fmt: skip
    try:
        assert proc.stdout.readline().split() == ["holding", "held"]
        pool.start()  # another pool of the same kind, running all along: no restart of anything
        time.sleep(4 * LEASE_S)  # the child renews its lease: a live job is never taken
        assert row(db, "held")[0] == "running" and ran == []
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: row(db, "held")[0] == "done", what="the job to be taken back and run")
    finally:
        proc.kill()
        pool.stop()
    assert [j.attempts for j in ran] == [2]  # the killed attempt counted
    assert pool.reclaimed == 1


def test_a_job_that_kills_its_worker_every_time_ends_failed_with_the_reason(db):
    with contextlib.closing(connect(db)) as conn:
        queue.enqueue(conn, "test", "poison", max_attempts=3)
    for _ in range(3):
        proc = child(db, "crash", seconds=20)
        try:
            assert proc.wait(30) == -signal.SIGKILL  # each run takes the job (back) and dies of it
        finally:
            proc.kill()
    proc = child(db, "crash", seconds=3 * LEASE_S + 2)  # takes back the third lease: no attempt is left
    assert proc.wait(30) == 0
    state, attempts, locked_by, error = row(db, "poison")
    assert (state, attempts, locked_by) == ("failed", 3, None)
    assert "lost the job" in error and "attempt 3 of 3: no attempt left" in error
    with contextlib.closing(connect(db)) as conn:
        assert queue.counts(conn, "test") == {"test": {"failed": 1}}


def test_a_second_instance_starting_never_resets_the_live_jobs_of_the_first(db):
    """Two plugins of the same node name share the database: the start of one used to put the other's running
    jobs back to pending (by name prefix), so they ran twice."""
    from nmdose.plugin import Plugin

    with contextlib.closing(connect(db)) as conn:
        queue.enqueue(conn, "first-only", "job")
    release = threading.Event()
    runs = []

    def slow(job):
        runs.append(job.attempts)
        release.wait(30)

    first = WorkerPool(lambda: connect(db), {"first-only": slow}, threads=1, name="researchPACS-worker",
                       lease_s=LEASE_S, poll_s=0.1)  # fmt: skip
    first.start()
    try:
        wait_for(lambda: runs, what="the first instance to take the job")
        held = row(db, "job")
        second = Plugin(db, node="researchPACS", worker_threads=1)
        second.on_started()
        try:
            assert second.started.wait(60)
            time.sleep(3 * LEASE_S)
            assert row(db, "job")[:3] == held[:3] == ("running", 1, "researchPACS-worker-0")
        finally:
            second.on_stopped()
        release.set()
        wait_for(lambda: row(db, "job")[0] == "done", what="the first instance to finish")
    finally:
        release.set()
        first.stop()
    assert runs == [1] and row(db, "job")[1] == 1


def test_a_postgresql_restart_while_a_handler_runs_costs_no_attempt_and_the_job_ends_done(pg, db):
    with contextlib.closing(connect(db)) as conn:
        queue.enqueue(conn, "test", "long-move", max_attempts=1)  # a single attempt: burning it would fail it
    tl = ThreadLocalConnection(db)
    in_job, restarted = threading.Event(), threading.Event()

    def handler(job):
        queue.counts(tl.get())  # the handler's connection, opened before the restart
        in_job.set()
        assert restarted.wait(60)  # "a long C-MOVE" while PostgreSQL restarts
        queue.enqueue(
            tl.get(), "mark", "after-restart"
        )  # checked before use: a fresh connection, not the dead one

    pool = WorkerPool(lambda: connect(db), {"test": handler}, threads=1, lease_s=LEASE_S, poll_s=0.1)
    pool.start()
    try:
        assert in_job.wait(30)
        pg.postgres_down()
        pg.postgres_up()
        restarted.set()
        wait_for(lambda: row(db, "long-move")[0] != "running", timeout_s=60, what="the job to end")
    finally:
        restarted.set()
        pool.stop()
    assert row(db, "long-move")[:2] == ("done", 1)
    with contextlib.closing(connect(db)) as conn:
        assert queue.counts(conn, "mark") == {"mark": {"pending": 1}}  # the write after the restart


def test_the_database_going_away_inside_a_job_defers_it_without_an_attempt(pg, db):
    """The handler's own write fails because PostgreSQL restarted under it (no check, no retry): an outage, so
    the job comes back later with its attempt given back, and then succeeds."""
    with contextlib.closing(connect(db)) as conn:
        queue.enqueue(conn, "test", "outage", max_attempts=1)
    calls = []

    def handler(job):
        calls.append(job.attempts)
        if len(calls) == 1:
            conn = connect(db)
            pg.postgres_down()
            pg.postgres_up()
            with conn.cursor() as cur:
                cur.execute("SELECT 1")  # the connection died with the server: OperationalError

    pool = WorkerPool(lambda: connect(db), {"test": handler}, threads=1, lease_s=LEASE_S, poll_s=0.1,
                      outage_retry_s=0.2)  # fmt: skip
    pool.start()
    try:
        wait_for(lambda: row(db, "outage")[0] == "done", timeout_s=90, what="the job to end done")
    finally:
        pool.stop()
    assert calls == [1, 1]  # both runs were the first attempt
    assert row(db, "outage")[:2] == ("done", 1)


def test_a_stale_thread_local_connection_is_replaced_before_use(pg, db):
    tl = ThreadLocalConnection(db, check_after_s=0)
    first = tl.get()
    pg.postgres_down()
    pg.postgres_up()
    conn = tl.get()
    assert conn is not first
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    conn.rollback()


def test_a_lease_taken_back_fences_out_its_old_holder(db):
    """The holder was cut off longer than its lease: its late complete changes nothing."""
    with contextlib.closing(connect(db)) as conn:
        queue.enqueue(conn, "test", "fenced", max_attempts=5)
        old = queue.claim(conn, ["test"], "cut-off", lease_s=0.2)
        time.sleep(0.5)
        taken = queue.reclaim_expired(conn, ["test"], backoff_s=0)
        assert [(r.job.key, r.state) for r in taken] == [("fenced", "pending")]
        new = queue.claim(conn, ["test"], "other", lease_s=30)
        assert new.attempts == 2
        assert queue.complete(conn, old) is False
        assert queue.fail(conn, old, "late") == "lost"
        assert queue.heartbeat(conn, [old, new]) == {new.id}
        assert row(db, "fenced")[:3] == ("running", 2, "other")
        assert queue.complete(conn, new) is True
    assert row(db, "fenced")[:2] == ("done", 2)


def test_leases_are_not_taken_back_before_postgresql_has_been_up_a_lease_length(pg, db):
    """After a database restart every holder gets a lease length to reconnect and renew."""
    with contextlib.closing(connect(db)) as conn:
        queue.enqueue(conn, "test", "restart", max_attempts=5)
        queue.claim(conn, ["test"], "holder", lease_s=3)
    time.sleep(3.2)  # expired
    pg.postgres_down()
    pg.postgres_up()
    with contextlib.closing(connect(db)) as conn:
        assert queue.reclaim_expired(conn, ["test"]) == []
        time.sleep(3.2)
        assert [r.job.key for r in queue.reclaim_expired(conn, ["test"])] == ["restart"]


def test_reclaim_reports_to_the_stage_and_overdue_lists_jobs_nobody_took_back(db):
    with contextlib.closing(connect(db)) as conn:
        queue.enqueue(conn, "orphan", "k1")
        queue.claim(conn, ["orphan"], "gone", lease_s=0.2)
        time.sleep(0.4)
        (job,) = queue.overdue(conn)
        assert (job["kind"], job["key"], job["locked_by"]) == ("orphan", "k1", "gone")
    reports = []

    def handler(job):
        raise AssertionError("not ready yet")

    handler.on_failure = lambda job, error, state: reports.append((job.key, state, error))
    pool = WorkerPool(lambda: connect(db), {"orphan": handler}, threads=1, lease_s=LEASE_S, backoff_s=60)
    assert pool.reclaim() == 1
    assert reports and reports[0][:2] == ("k1", "pending") and "gone lost the job" in reports[0][2]
    with contextlib.closing(connect(db)) as conn:
        assert queue.overdue(conn) == []


def test_dataclass_job_built_without_a_token_stays_unfenced(db):
    """Claimers that build Job from their own 6-column RETURNING (forward's) keep working."""
    with contextlib.closing(connect(db)) as conn:
        queue.enqueue(conn, "test", "legacy")
        job = queue.claim(conn, ["test"], "w")
        legacy = dataclasses.replace(job, token=None)
        assert queue.complete(conn, legacy) is True
    assert row(db, "legacy")[0] == "done"
