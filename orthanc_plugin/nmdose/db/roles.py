"""Least privilege in PostgreSQL: one role per kind of work, none of them a superuser at runtime.

| role (postgresql.yaml) | what it may do |
|---|---|
| `user` (admin, bootstrap) | the superuser `initdb` makes for the local stack: creates the roles and databases below, hands them over; never used at runtime |
| `owner_user` | owns the nmdose database and every object the migrations create; runs the migrations |
| `worker_user` | the pipeline (census, retrieval, forwarding, dose ingest, the queue; the plugin's workers, the CLI, the dose worker): reads and writes the rows of the data schemas, no DDL |
| `web_user` | the pages and their API: reads the data schemas, writes only its answer cache `dose.web_cache` |
| `orthanc_user` | owns the `orthanc_index` database (Orthanc's index) and nothing else |

Both runtime roles may INSERT and SELECT the tables of schema ``audit`` (an append-only trail), never UPDATE,
DELETE or TRUNCATE them. Grants are (re)applied after every migration run (:func:`grant_runtime`, called by
``nmdose.db.migrate.migrate``) and as default privileges of the owner, so a table a later migration creates is
covered. Everything here is idempotent: `stack up` and the plugin run it on every start, also on installs made
before the roles existed (their objects, owned by the bootstrap superuser, are handed to the owner).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from psycopg2 import sql

from nmdose.errors import SecretError

if TYPE_CHECKING:
    from nmdose.config import Config

log = logging.getLogger(__name__)

RUNTIME_ROLES = ("owner", "worker", "web", "orthanc")
AUDIT_SCHEMA = "audit"
WEB_WRITES = (  # the only tables the web role writes: its answer cache (nmdose/web/cache.py), and the alert
    # rules and acknowledgements (web/routes_alerts.py; deleting a rule deletes its firings and deliveries)
    "dose.web_cache", "dose.alert_rule", "dose.alert_firing", "dose.alert_delivery",
    # the research projects (nmdose/projects: studies added, uploads and members through the project routes)
    "rpacs.project", "rpacs.project_study", "rpacs.project_member",
    # the outlier worklist's acknowledgements and their history (web/routes_outliers.py, sql/021_outlier_acks.sql)
    "dose.outlier_ack", "dose.outlier_ack_log",
)  # fmt: skip
_LOCK_ID = 0x6E6D646F7365  # the migrations' advisory lock: grants never run concurrently (tuple concurrently updated)


def secret_names(cfg: Config) -> dict[str, str]:
    """role -> the secret holding its password."""
    return dict(cfg.postgresql.ROLE_SECRETS)


def data_schemas(cfg: Config) -> list[str]:
    """The schemas of the nmdose database the pipeline writes (schema_definitions.yaml), audit left out."""
    return [s for s in cfg.schemas.schemas if s != AUDIT_SCHEMA]


def admin_available(cfg: Config) -> bool:
    """True when the bootstrap superuser's password is in the secret store (the local stack; not prod)."""
    try:
        cfg.secrets.get(cfg.postgresql.ROLE_SECRETS["admin"])
    except SecretError:
        return False
    return True


# ----- bootstrap (as the superuser): roles, databases, ownership
def ensure_roles(cur, cfg: Config) -> None:
    """Create the four login roles (NOSUPERUSER, NOCREATEDB, NOCREATEROLE) or reset their attributes and
    passwords to the secret store's."""
    pg = cfg.postgresql
    for role in RUNTIME_ROLES:
        name = pg.role_user(role)
        password = cfg.secrets.get(pg.ROLE_SECRETS[role])
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(
            sql.SQL(
                "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %s"
            ).format(sql.SQL(verb), sql.Identifier(name)),
            (password,),
        )


def ensure_database(cur, name: str, owner: str, connect: tuple[str, ...]) -> None:
    """The database exists, belongs to `owner`, and only `owner` and the `connect` roles may connect."""
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    if cur.fetchone() is None:
        cur.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
    else:
        cur.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner))
        )
    cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
    for role in connect:
        cur.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(name), sql.Identifier(role))
        )


# Objects of the bootstrap superuser in this database's own schemas, handed to the owner (installs made before
# the roles existed, and databases the superuser created). Sequences owned by a table column follow their table.
_HAND_OVER = """
DO $$
DECLARE
    r record;
    admin oid := (SELECT oid FROM pg_roles WHERE rolname = %(admin)s);
    target name := %(owner)s;
BEGIN
    FOR r IN SELECT n.nspname FROM pg_namespace n
              WHERE n.nspowner = admin AND n.nspname NOT IN ('public', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_%%'
    LOOP
        EXECUTE format('ALTER SCHEMA %%I OWNER TO %%I', r.nspname, target);
    END LOOP;
    FOR r IN SELECT c.oid::regclass AS obj, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relowner = admin AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
                AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
                          AND d.classid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %%s %%s OWNER TO %%I',
                       CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                      WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                                      ELSE 'TABLE' END, r.obj, target);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS obj, p.prokind FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE p.proowner = admin AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_%%'
    LOOP
        EXECUTE format('ALTER %%s %%s OWNER TO %%I',
                       CASE r.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                       r.obj, target);
    END LOOP;
    FOR r IN SELECT t.oid::regtype AS obj, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
              WHERE t.typowner = admin AND t.typtype IN ('e', 'd', 'r') AND t.typelem = 0
                AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
    LOOP
        EXECUTE format('ALTER %%s %%s OWNER TO %%I', CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                       r.obj, target);
    END LOOP;
END $$"""


def hand_over(cur, admin: str, owner: str) -> None:
    """Give the bootstrap superuser's objects of the connected database to `owner` (idempotent)."""
    cur.execute(_HAND_OVER, {"admin": admin, "owner": owner})


def _admin_connection(cfg: Config, database: str):
    from nmdose.db import connect

    return connect(cfg, database, role="admin", autocommit=True)


def prepare_database(cfg: Config, database: str, *, owner_role: str = "owner") -> bool:
    """As the bootstrap superuser, when its password is available (the local stack; never in prod): `database`
    belongs to the owner role, holds nothing of the superuser's, and only our roles may connect. False when
    skipped (no superuser password: the database administrator did it, see docker/postgres-init.sql)."""
    if not admin_available(cfg):
        return False
    pg = cfg.postgresql
    owner = pg.role_user(owner_role)
    connect_roles = (pg.worker_user, pg.web_user) if owner_role == "owner" else ()
    with contextlib.closing(_admin_connection(cfg, database)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            ensure_roles(cur, cfg)
            ensure_database(cur, database, owner, connect_roles)
            hand_over(cur, pg.user, owner)
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return True


def bootstrap(cfg: Config) -> None:
    """The local stack, as the bootstrap superuser: the roles, both databases with their owners, and every
    object handed to its owner. Run by `stack up` before the migrations; idempotent."""
    from nmdose.db import MAINTENANCE_DATABASE

    pg = cfg.postgresql
    with contextlib.closing(_admin_connection(cfg, MAINTENANCE_DATABASE)) as conn, conn.cursor() as cur:
        ensure_roles(cur, cfg)
        ensure_database(cur, pg.database, pg.owner_user, (pg.worker_user, pg.web_user))
        ensure_database(cur, pg.orthanc_database, pg.orthanc_user, ())
    prepare_database(cfg, pg.database)
    prepare_database(cfg, pg.orthanc_database, owner_role="orthanc")


# ----- grants (as the owner, after the migrations)
def grant_runtime(cur, cfg: Config) -> None:
    """What the runtime roles may do in the nmdose database, applied to every existing object and as the owner's
    default privileges for the objects later migrations create. Call as the owner (who owns the objects)."""
    pg = cfg.postgresql
    worker, web = sql.Identifier(pg.worker_user), sql.Identifier(pg.web_user)
    cur.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", ([*data_schemas(cfg), AUDIT_SCHEMA],)
    )
    present = {r[0] for r in cur.fetchall()}
    data = [sql.Identifier(s) for s in data_schemas(cfg) if s in present]
    statements: list[sql.Composable] = []
    if data:
        schemas = sql.SQL(", ").join(data)
        statements += [
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}").format(schemas, worker, web),
            # worker: the rows, not the tables (no DDL); TRUNCATE is a DELETE without WHERE for this role
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {} TO {}").format(
                schemas, worker
            ),
            sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
                schemas, worker
            ),
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schemas, web),
            sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schemas, web),
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO {}"
            ).format(schemas, worker),
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {}"
            ).format(schemas, worker),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                schemas, web
            ),
        ]
        for table in WEB_WRITES:
            cur.execute("SELECT to_regclass(%s)", (table,))
            if cur.fetchone()[0] is not None:
                statements.append(
                    sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
                        sql.Identifier(*table.split(".")), web
                    )
                )
    if AUDIT_SCHEMA in present:
        audit = sql.Identifier(AUDIT_SCHEMA)
        statements += [
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {}").format(audit, worker, web),
            sql.SQL("GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA {} TO {}, {}").format(audit, worker, web),
            sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {} FROM {}, {}").format(
                audit, worker, web
            ),
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}, {}").format(audit, worker, web),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT, INSERT ON TABLES TO {}, {}").format(
                audit, worker, web
            ),
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {}, {}"
            ).format(audit, worker, web),
        ]
        cur.execute("SELECT to_regprocedure('audit.purge(integer, text, text)')")
        if cur.fetchone()[0] is not None:  # the retention purge: the plugin and the CLI (worker) only
            statements += [
                sql.SQL("REVOKE EXECUTE ON FUNCTION audit.purge(integer, text, text) FROM PUBLIC"),
                sql.SQL("GRANT EXECUTE ON FUNCTION audit.purge(integer, text, text) TO {}").format(worker),
            ]
    cur.execute("SELECT to_regclass('public.nmdose_migrations')")
    if cur.fetchone()[0] is not None:  # the health route and `db status` read it
        statements.append(sql.SQL("GRANT SELECT ON public.nmdose_migrations TO {}, {}").format(worker, web))
    for statement in statements:
        cur.execute(statement)
