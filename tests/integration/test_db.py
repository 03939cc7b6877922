"""Migrations and the durable queue against the real PostgreSQL of the test stack."""

import contextlib
import shutil
import threading
import time

import pytest

from nmdose.db import connect, queue
from nmdose.db.migrate import migrate, status
from nmdose.errors import DatabaseError
from nmdose.workers import WorkerPool
from tests.support import REPO

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch_db(stack):
    """A fresh database for one test."""
    name = f"scratch_{int(time.time() * 1000)}"
    with contextlib.closing(connect(stack.cfg, "postgres", autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn = connect(stack.cfg, name)
    yield conn
    conn.close()
    with contextlib.closing(connect(stack.cfg, "postgres", autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute(f'DROP DATABASE "{name}"')


def test_migrate_creates_schemas_and_is_idempotent(scratch_db):
    every = sorted(p.stem for p in (REPO / "sql").glob("*.sql"))
    assert every[0] == "001_schemas"
    assert migrate(scratch_db, REPO / "sql") == every
    assert migrate(scratch_db, REPO / "sql") == []
    with scratch_db.cursor() as cur:
        cur.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name IN ('rpacs','dose','jobs')"
        )
        assert sorted(r[0] for r in cur.fetchall()) == ["dose", "jobs", "rpacs"]
    assert status(scratch_db, REPO / "sql")["pending"] == []


def test_changed_migration_is_refused(scratch_db, tmp_path):
    shutil.copy(REPO / "sql" / "001_schemas.sql", tmp_path / "001_schemas.sql")
    migrate(scratch_db, tmp_path)
    (tmp_path / "001_schemas.sql").write_text("-- edited\n")
    with pytest.raises(DatabaseError, match="changed after it was applied"):
        migrate(scratch_db, tmp_path)


def test_failing_migration_is_rolled_back_and_named(scratch_db, tmp_path):
    shutil.copy(REPO / "sql" / "001_schemas.sql", tmp_path / "001_schemas.sql")
    (tmp_path / "002_broken.sql").write_text("CREATE TABLE rpacs.t (id int); SELECT no_such_function();")
    with pytest.raises(DatabaseError, match="002_broken.sql: migration failed"):
        migrate(scratch_db, tmp_path)
    with scratch_db.cursor() as cur:
        cur.execute("SELECT to_regclass('rpacs.t')")
        assert cur.fetchone()[0] is None
    assert status(scratch_db, tmp_path) == {"applied": ["001_schemas"], "pending": ["002_broken"]}


def test_badly_named_migration_is_an_error(tmp_path):
    (tmp_path / "schemas.sql").write_text("")
    with pytest.raises(DatabaseError, match="expected a migration file named NNN_name.sql"):
        migrate(None, tmp_path)


def test_unreachable_database_is_a_clear_error(stack):
    from dataclasses import replace

    cfg = replace(stack.cfg, postgresql=stack.cfg.postgresql.model_copy(update={"port": 9}))
    with pytest.raises(
        DatabaseError, match=r"PostgreSQL 127\.0\.0\.1:9/nmdose as nmdose_worker: unreachable"
    ):
        connect(cfg)


def test_enqueue_is_idempotent_and_claims_never_overlap(scratch_db, stack):
    migrate(scratch_db, REPO / "sql")
    assert queue.enqueue(scratch_db, "forward", "1.2.3")
    assert not queue.enqueue(scratch_db, "forward", "1.2.3")
    for i in range(20):
        queue.enqueue(scratch_db, "forward", f"1.2.{i + 10}")
    dbname = scratch_db.get_dsn_parameters()["dbname"]
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer():
        with contextlib.closing(connect(stack.cfg, dbname)) as conn:
            while (job := queue.claim(conn, ["forward"], "t")) is not None:
                with lock:
                    claimed.append(job.key)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 21 and len(set(claimed)) == 21
    assert queue.counts(scratch_db) == {"forward": {"running": 21}}
    assert queue.requeue_running(scratch_db) == 21
    assert queue.counts(scratch_db) == {"forward": {"pending": 21}}


def test_failed_job_backs_off_then_fails_after_max_attempts(scratch_db):
    migrate(scratch_db, REPO / "sql")
    queue.enqueue(scratch_db, "retrieve", "9.9", max_attempts=2)
    job = queue.claim(scratch_db, ["retrieve"], "w")
    assert queue.fail(scratch_db, job, "PACS timeout", backoff_s=3600) == "pending"
    assert queue.claim(scratch_db, ["retrieve"], "w") is None  # backing off
    with scratch_db.cursor() as cur:
        cur.execute("UPDATE jobs.queue SET not_before = now()")
    scratch_db.commit()
    job = queue.claim(scratch_db, ["retrieve"], "w")
    assert job.attempts == 2
    assert queue.fail(scratch_db, job, "PACS timeout again") == "failed"
    with scratch_db.cursor() as cur:
        cur.execute("SELECT state, last_error, attempts FROM jobs.queue WHERE key = '9.9'")
        assert cur.fetchone() == ("failed", "PACS timeout again", 2)


def test_workers_survive_bad_jobs_and_a_database_that_goes_away(scratch_db, stack):
    migrate(scratch_db, REPO / "sql")
    dbname = scratch_db.get_dsn_parameters()["dbname"]
    for key in ("ok-1", "boom", "ok-2"):
        queue.enqueue(scratch_db, "test", key, max_attempts=1)
    attempts = {"n": 0}

    def flaky_connect():
        attempts["n"] += 1
        if attempts["n"] <= 2:
            raise DatabaseError("PostgreSQL unreachable (simulated outage)")
        return connect(stack.cfg, dbname)

    done = []

    def handler(job):
        if job.key == "boom":
            raise ValueError("bad dose report")
        done.append(job.key)

    pool = WorkerPool(flaky_connect, {"test": handler}, threads=1, poll_s=0.1)
    pool.start()
    deadline = time.monotonic() + 20
    while len(done) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pool.alive() == 1
    pool.stop()
    assert sorted(done) == ["ok-1", "ok-2"]
    assert queue.counts(scratch_db)["test"] == {"done": 2, "failed": 1}


def test_asking_again_for_a_running_job_runs_it_once_more(scratch_db):
    migrate(scratch_db, REPO / "sql")
    queue.enqueue(scratch_db, "forward", "study-1")
    job = queue.claim(scratch_db, ["forward"], "w")
    assert queue.enqueue(scratch_db, "forward", "study-1", {"again": True}, reset=True)
    assert queue.claim(scratch_db, ["forward"], "w") is None  # never twice at once
    queue.complete(scratch_db, job)
    again = queue.claim(scratch_db, ["forward"], "w")
    assert again is not None and again.payload == {"again": True}
    queue.complete(scratch_db, again)
    assert queue.counts(scratch_db) == {"forward": {"done": 1}}


def test_migrations_run_as_the_owner_and_grant_the_runtime_roles(scratch_db, stack):
    """Whoever asks (here a worker connection), the migrations run as the owner role; then the worker may write
    rows, the web role may only read them (and write its cache), and neither may change the schema."""
    pg = stack.cfg.postgresql
    assert scratch_db.nmdose_role == "worker"
    migrate(scratch_db, REPO / "sql")
    with scratch_db.cursor() as cur:
        cur.execute(
            """SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname IN ('rpacs', 'dose', 'jobs', 'audit') AND c.relkind IN ('r', 'S')"""
        )
        assert [r[0] for r in cur.fetchall()] == [pg.owner_user]
        checks = {
            (pg.worker_user, "jobs.queue", "INSERT"): True,
            (pg.worker_user, "rpacs.study", "DELETE"): True,
            (pg.web_user, "rpacs.study", "SELECT"): True,
            (pg.web_user, "rpacs.study", "INSERT"): False,
            (pg.web_user, "jobs.queue", "UPDATE"): False,
            (pg.web_user, "dose.web_cache", "INSERT"): True,
            (pg.web_user, "dose.web_cache", "DELETE"): True,
            (pg.worker_user, "public.nmdose_migrations", "INSERT"): False,
        }
        for (user, table, privilege), expected in checks.items():
            cur.execute("SELECT has_table_privilege(%s, %s, %s)", (user, table, privilege))
            assert cur.fetchone()[0] is expected, (user, table, privilege)
        cur.execute("SELECT has_schema_privilege(%s, 'rpacs', 'CREATE')", (pg.worker_user,))
        assert cur.fetchone()[0] is False
