"""Least privilege on the real stack (issue 13 item 5): one PostgreSQL role per kind of work, none a superuser;
var/ closed to other users after studies went through the pipeline; no database password in a generated file."""

import contextlib
import os
import re
import shutil
import stat
import subprocess
import time
from datetime import date
from pathlib import Path

import psycopg2
import pytest
import requests

from nmdose.cli import main
from nmdose.db import connect
from nmdose.db.migrate import migrate
from nmdose.envfile import read_env_file
from nmdose.simulate import generate
from nmdose.simulate.upload import upload
from nmdose.stack import ORTHANC_DB_PASSWORD_ENV
from tests.support import REPO, RunningStack, make_tempdir

pytestmark = pytest.mark.integration

STABLE_AGE_S = 3


@pytest.fixture(scope="module")
def run():
    """A stack of its own, and a few studies retrieved by the plugin, forwarded and ingested on the dose side."""
    running = RunningStack(
        retrieve={
            "retry": {"max_attempts": 4, "backoff_s": 0.5, "backoff_max_s": 2},
            "time_window": {"weekdays": "00:00-24:00", "weekends": "00:00-24:00"},
        },
        nodes={"researchPACS": {"orthanc_settings": {"StableAge": STABLE_AGE_S}}},
    )
    out = make_tempdir("nmdose-lp-sim-")
    try:
        manifest = generate(out, studies=6, years=1, seed=5, today=date(2026, 6, 30))
        upload(out, running.cfg.nodes["simulationPACS"], cfg=running.cfg)
        uids = [s.study_uid for s in manifest.studies if s.dose_objects][:3]
        assert uids
        # the command line writes under var/ too (var/log/census.log): it runs with umask 077
        assert main([*running.cli_args(), "census", "run", "--to", "2026-06-30"]) == 0
        assert (running.cfg.log_dir / "census.log").is_file()
        url = running.cfg.research_node.http_url
        _wait(
            lambda: requests.get(f"{url}/nmdose/health", timeout=5).json()["status"] == "ok", "plugin health"
        )
        r = requests.post(f"{url}/nmdose/retrieve", json={"census": False, "studies": uids}, timeout=10)
        assert r.status_code == 202, r.text
        _wait(
            lambda: _count(running.cfg, "rpacs.forward_study", uids, "state = 'done'") == len(uids),
            "forwarded",
        )
        _wait(lambda: _count(running.cfg, "dose.study", uids) == len(uids), "dose ingest", timeout_s=60)
        running.uids = uids
        yield running
    finally:
        running.close()
        shutil.rmtree(out, ignore_errors=True)


def _wait(check, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException, psycopg2.Error):
            if check():
                return
        time.sleep(0.3)
    raise AssertionError(f"{what}: not reached within {timeout_s} s")


def _count(cfg, table: str, uids, where: str = "true") -> int:
    with contextlib.closing(connect(cfg)) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT count(*) FROM {table} WHERE study_instance_uid = ANY(%s) AND {where}", (list(uids),)
        )
        return cur.fetchone()[0]


def _passwords(cfg) -> dict[str, str]:
    return {role: cfg.secrets.get(name) for role, name in cfg.postgresql.ROLE_SECRETS.items()}


def _denied(cfg, role: str, statement: str, database: str | None = None) -> None:
    with (
        contextlib.closing(connect(cfg, database, role=role)) as conn,
        conn.cursor() as cur,
        pytest.raises(psycopg2.errors.InsufficientPrivilege),
    ):
        cur.execute(statement)


# ----- roles
def test_runtime_roles_are_distinct_and_none_is_a_superuser(run):
    pg = run.cfg.postgresql
    names = [pg.owner_user, pg.worker_user, pg.web_user, pg.orthanc_user]
    assert len(set(names + [pg.user])) == 5
    with contextlib.closing(connect(run.cfg, "postgres")) as admin, admin.cursor() as cur:
        cur.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = ANY(%s)",
            (names,),
        )
        rows = {r[0]: r[1:] for r in cur.fetchall()}
        assert rows == {n: (False, False, False, False) for n in names}
        cur.execute(
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY(%s)",
            ([pg.database, pg.orthanc_database],),
        )
        assert dict(cur.fetchall()) == {pg.database: pg.owner_user, pg.orthanc_database: pg.orthanc_user}


def test_every_process_connects_as_its_own_role(run):
    """Orthanc's index as the orthanc role, the plugin's workers and the dose worker as the worker role; nothing
    runs as the bootstrap superuser."""
    pg = run.cfg.postgresql
    with contextlib.closing(connect(run.cfg, "postgres")) as admin, admin.cursor() as cur:
        cur.execute(
            """SELECT datname, usename, count(*) FROM pg_stat_activity
                WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1, 2"""
        )
        seen = {(db, user) for db, user, _ in cur.fetchall()}
    assert (pg.orthanc_database, pg.orthanc_user) in seen
    assert (pg.database, pg.worker_user) in seen
    assert not any(user == pg.user for _, user in seen), seen
    assert {user for db, user in seen if db == pg.orthanc_database} == {pg.orthanc_user}


def test_the_pages_read_as_the_web_role_and_the_rest_as_the_worker(run):
    r = requests.get(f"{run.cfg.research_node.http_url}/nmdose/api/dose/ct-protocols", timeout=30)
    assert r.status_code == 200, r.text
    with contextlib.closing(connect(run.cfg, role="web")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dose.web_cache")  # the page above stored its answer as the web role
        assert cur.fetchone()[0] >= 1
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == run.cfg.postgresql.web_user


def test_web_reads_and_writes_only_its_cache(run):
    with contextlib.closing(connect(run.cfg, role="web")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rpacs.study")
        cur.execute("SELECT count(*) FROM jobs.queue")
        cur.execute("INSERT INTO dose.web_cache (key, data_version, body) VALUES ('lp-test', 0, '[]')")
        cur.execute("DELETE FROM dose.web_cache WHERE key = 'lp-test'")
        conn.commit()
    for statement in (
        "UPDATE rpacs.study SET description = 'x'",
        "DELETE FROM dose.ct_event",
        "INSERT INTO jobs.queue (kind, key) VALUES ('x', 'y')",
        "TRUNCATE dose.study",
        "CREATE TABLE dose.x (id int)",
    ):
        _denied(run.cfg, "web", statement)


def test_worker_writes_rows_but_no_ddl_and_no_other_database(run):
    with contextlib.closing(connect(run.cfg)) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == run.cfg.postgresql.worker_user
        cur.execute("UPDATE jobs.queue SET updated_at = updated_at WHERE false")
        conn.rollback()
    for statement in (
        "CREATE TABLE rpacs.x (id int)",
        "DROP TABLE dose.web_cache",
        "ALTER TABLE rpacs.study ADD COLUMN x int",
        "CREATE SCHEMA x",
        "INSERT INTO public.nmdose_migrations (version, name, checksum) VALUES ('999', 'x', 'x')",
    ):
        _denied(run.cfg, "worker", statement)
    pg = run.cfg.postgresql
    for role, database in (
        ("worker", pg.orthanc_database),
        ("web", pg.orthanc_database),
        ("orthanc", pg.database),
    ):
        with pytest.raises(Exception, match="permission denied for database"):
            connect(run.cfg, database, role=role)


# ----- scratch databases: audit grants, an install made before the roles
@pytest.fixture
def scratch(run):
    name = f"lp_{int(time.time() * 1000)}"
    with contextlib.closing(connect(run.cfg, "postgres", autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield name
    with contextlib.closing(connect(run.cfg, "postgres", autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_audit_tables_are_append_only_for_the_runtime_roles(run, scratch, tmp_path):
    """Schema audit (sql/008_audit.sql, and any later migration adding to it): the grant step after the
    migrations lets web and worker INSERT and SELECT, never UPDATE, DELETE or TRUNCATE (by privilege, whatever
    triggers the tables have); a table the owner adds later without a grant step is covered too."""
    for f in (REPO / "sql").glob("*.sql"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "900_audit_more.sql").write_text(
        "CREATE SCHEMA IF NOT EXISTS audit; CREATE TABLE audit.lp_event (id bigserial PRIMARY KEY, route text);"
    )
    with contextlib.closing(connect(run.cfg, scratch)) as conn:
        assert "900_audit_more" in migrate(conn, tmp_path)
    with contextlib.closing(connect(run.cfg, scratch, role="owner")) as owner, owner.cursor() as cur:
        cur.execute(
            "CREATE TABLE audit.lp_later (id bigserial PRIMARY KEY, what text)"
        )  # no grant step after it
        owner.commit()
        cur.execute("SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'audit'::regnamespace "
                    "AND c.relkind = 'r'")  # fmt: skip
        tables = [r[0] for r in cur.fetchall()]
        assert {"audit.lp_event", "audit.lp_later"} <= set(tables)
        pg = run.cfg.postgresql
        for user in (pg.worker_user, pg.web_user):
            for table in tables:
                for privilege, expected in (("INSERT", True), ("SELECT", True), ("UPDATE", False),
                                            ("DELETE", False), ("TRUNCATE", False)):  # fmt: skip
                    cur.execute("SELECT has_table_privilege(%s, %s, %s)", (user, table, privilege))
                    assert cur.fetchone()[0] is expected, (user, table, privilege)
    for role in ("worker", "web"):
        with contextlib.closing(connect(run.cfg, scratch, role=role)) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO audit.lp_event (route) VALUES (%s)", (f"/{role}",))
            cur.execute("INSERT INTO audit.lp_later (what) VALUES (%s)", (role,))
            cur.execute("SELECT count(*) FROM audit.lp_event")
            conn.commit()
        for statement in (
            "UPDATE audit.lp_event SET route = 'forged'",
            "DELETE FROM audit.lp_event",
            "TRUNCATE audit.lp_event",
            "UPDATE audit.lp_later SET what = 'forged'",
            "DELETE FROM audit.lp_later",
        ):
            _denied(run.cfg, role, statement, scratch)


def test_an_install_made_before_the_roles_is_handed_to_the_owner(run, scratch):
    """Objects created by the bootstrap superuser (every install before this change) go to the owner on the
    next migrate, and the runtime roles get their grants."""
    old = psycopg2.connect(run.cfg.dsn(scratch))  # the superuser, as `stack up` migrated before
    try:
        migrate(old, REPO / "sql")
    finally:
        old.close()
    with contextlib.closing(connect(run.cfg, scratch)) as conn:
        assert migrate(conn, REPO / "sql") == []
        with conn.cursor() as cur:
            cur.execute(
                """SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname IN ('rpacs', 'dose', 'jobs') AND c.relkind IN ('r', 'S', 'v')"""
            )
            assert [r[0] for r in cur.fetchall()] == [run.cfg.postgresql.owner_user]
            cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
            assert cur.fetchone()[0] == run.cfg.postgresql.owner_user
            cur.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'public.nmdose_migrations'::regclass"
            )
            assert (
                cur.fetchone()[0] == run.cfg.postgresql.owner_user
            )  # public (Orthanc's index: the same way)
            cur.execute(
                """SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname IN ('rpacs', 'dose', 'audit') AND pg_get_userbyid(p.proowner) <> %s""",
                (run.cfg.postgresql.owner_user,),
            )
            assert cur.fetchone()[0] == 0  # the trigger functions, audit.purge() (SECURITY DEFINER) included
            cur.execute("INSERT INTO jobs.queue (kind, key) VALUES ('lp', '1')")
            conn.commit()


# ----- files
def test_var_is_closed_to_other_users_after_studies_went_through(run):
    var = run.cfg.var_dir
    world = []
    for folder, dirs, files in os.walk(var):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                continue
            if st.st_mode & 0o007:
                world.append(f"{oct(st.st_mode & 0o777)} {path}")
    assert world == []
    find = subprocess.run(["find", str(var), "-perm", "-o+r", "-type", "f"], capture_output=True, text=True)
    assert find.returncode == 0 and find.stdout == ""
    find = subprocess.run(["find", str(var), "-type", "d", "-perm", "/o+rwx"], capture_output=True, text=True)
    assert find.returncode == 0 and find.stdout == ""
    storage = list((run.stack.orthanc_dir("researchPACS") / "storage").rglob("*"))
    assert any(p.is_file() for p in storage)  # the studies are there, unreadable by others
    assert stat.S_IMODE(var.stat().st_mode) in (0o700, 0o710)
    for sub in ("orthanc", "run"):
        assert stat.S_IMODE((var / sub).stat().st_mode) == 0o700
    if os.geteuid() == 0:  # PostgreSQL runs as `postgres`: it passes through var/ by group, nobody else does
        import grp

        assert grp.getgrgid(var.stat().st_gid).gr_name == "postgres"
        assert stat.S_IMODE(var.stat().st_mode) == 0o710


def test_no_generated_file_holds_a_database_password(run):
    passwords = {p for p in _passwords(run.cfg).values() if p}
    assert len(passwords) == 5
    secrets_env = run.cfg.var_dir / "secrets.env"
    assert set(read_env_file(secrets_env).values()) >= passwords
    assert stat.S_IMODE(secrets_env.stat().st_mode) == 0o600
    leaks = []
    for path in run.cfg.var_dir.rglob("*"):
        if path == secrets_env or not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        leaks += [f"{path}" for p in passwords if p.encode() in data]
    assert leaks == []
    conf = (run.stack.orthanc_dir("researchPACS") / "orthanc.json").read_text()
    assert f'"Password": "${{{ORTHANC_DB_PASSWORD_ENV}}}"' in conf
    assert f'"Username": "{run.cfg.postgresql.orthanc_user}"' in conf
    # the password reaches Orthanc in its environment (readable by its own user only)
    pid = run.stack._read_pid("researchPACS")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"{ORTHANC_DB_PASSWORD_ENV}={_passwords(run.cfg)['orthanc']}".encode() in environ


# ----- the production init script, run by psql as the Docker entrypoint runs it
def test_the_compose_init_script_makes_the_roles_and_databases(run, tmp_path):
    """docker/postgres-init.sql through a real psql against a real PostgreSQL (names prefixed so that they do not
    meet this stack's own roles): roles with their secret files' passwords, none a superuser, databases owned."""
    from nmdose.stack import find_pg_bin

    names = {"nmdose_owner": "lpi_owner", "nmdose_worker": "lpi_worker", "nmdose_web": "lpi_web",
             "nmdose_orthanc": "lpi_orthanc", "orthanc_index": "lpi_index"}  # fmt: skip
    script = (REPO / "docker" / "postgres-init.sql").read_text()
    for old, new in names.items():
        script = script.replace(old, new)
    script = re.sub(r"DATABASE nmdose\b", "DATABASE lpi_db", script)
    script = script.replace("/run/secrets/", f"{tmp_path}/")
    for secret in ("nmdose_db_owner_password", "nmdose_db_worker_password", "nmdose_db_web_password",
                   "nmdose_orthanc_db_password"):  # fmt: skip
        (tmp_path / secret).write_text(f"pw-{secret}\n")  # Docker secret files end with a newline
    (tmp_path / "init.sql").write_text(script)
    pg = run.cfg.postgresql
    admin_pw = run.cfg.secrets.get(pg.ROLE_SECRETS["admin"])

    def admin_sql(statement: str) -> None:
        with (
            contextlib.closing(connect(run.cfg, "postgres", autocommit=True)) as admin,
            admin.cursor() as cur,
        ):
            cur.execute(statement)

    admin_sql("CREATE DATABASE lpi_db")  # POSTGRES_DB: the entrypoint makes it before the init scripts
    try:
        proc = subprocess.run(
            [str(find_pg_bin() / "psql"), "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-h", pg.host, "-p", str(pg.port),
             "-U", pg.user, "-d", "lpi_db", "-f", str(tmp_path / "init.sql")],
            env={**os.environ, "PGPASSWORD": admin_pw}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        with contextlib.closing(connect(run.cfg, "postgres")) as admin, admin.cursor() as cur:
            cur.execute("SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles "
                        "WHERE rolname LIKE 'lpi\\_%%'")  # fmt: skip
            assert {r[0]: r[1:] for r in cur.fetchall()} == {
                n: (False, False, False, True) for n in ("lpi_owner", "lpi_worker", "lpi_web", "lpi_orthanc")
            }
            cur.execute(
                "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname LIKE 'lpi\\_%%'"
            )
            assert dict(cur.fetchall()) == {"lpi_db": "lpi_owner", "lpi_index": "lpi_orthanc"}
        # the passwords are the secret files' (without their newline); PUBLIC may not connect
        worker = psycopg2.connect(host=pg.host, port=pg.port, dbname="lpi_db", user="lpi_worker",
                                  password="pw-nmdose_db_worker_password")  # fmt: skip
        worker.close()
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(host=pg.host, port=pg.port, dbname="lpi_index", user="lpi_worker",
                             password="pw-nmdose_db_worker_password")  # fmt: skip
    finally:
        admin_sql("DROP DATABASE IF EXISTS lpi_db WITH (FORCE)")
        admin_sql("DROP DATABASE IF EXISTS lpi_index WITH (FORCE)")
        for role in ("lpi_owner", "lpi_worker", "lpi_web", "lpi_orthanc"):
            admin_sql(f"DROP ROLE IF EXISTS {role}")


def test_db_migrate_on_the_command_line_runs_as_the_owner(run, capsys):
    assert main([*run.cli_args(), "db", "migrate"]) == 0
    assert "database is up to date" in capsys.readouterr().out
    assert main([*run.cli_args(), "db", "status", "--json"]) == 0  # read by the worker role
    assert '"pending": []' in capsys.readouterr().out
