"""PostgreSQL access: connections, migrations (sql/NNN_*.sql) and the durable job queue."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from nmdose.errors import DatabaseError

if TYPE_CHECKING:
    from nmdose.config import Config


ROLES = ("admin", "owner", "worker", "web", "orthanc")
MAINTENANCE_DATABASE = "postgres"


class NmdoseConnection(psycopg2.extensions.connection):
    """A psycopg2 connection that knows its configuration and role (`migrate` reconnects as the owner)."""

    nmdose_cfg: Config | None = None
    nmdose_role: str | None = None


def default_role(database: str | None) -> str:
    """The role of ``connect(cfg)`` without ``role=``: the maintenance database ``postgres`` (creating and dropping
    databases, local stack and tests only) → admin; everything else (the plugin's workers, the CLI, the dose
    worker) → worker. The pages and their API ask for ``role="web"`` themselves."""
    return "admin" if database == MAINTENANCE_DATABASE else "worker"


def connect(cfg: Config, database: str | None = None, *, role: str | None = None, autocommit: bool = False):
    """A psycopg2 connection to the nmdose database (or `database`) as `role` (see :data:`ROLES` and
    :func:`default_role`), with a clear error when unreachable. Runtime roles are never superusers."""
    pg = cfg.postgresql
    if role is None:
        role = default_role(database)
    if role not in ROLES:
        raise ValueError(f"unknown database role {role!r}: expected one of {', '.join(ROLES)}")
    user = pg.role_user(role)
    try:
        conn = psycopg2.connect(cfg.dsn(database, role=role), connection_factory=NmdoseConnection)
    except psycopg2.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(
            f"PostgreSQL {pg.host}:{pg.port}/{database or pg.database} as {user}: unreachable ({reason})"
        ) from None
    conn.nmdose_cfg, conn.nmdose_role = cfg, role
    conn.autocommit = autocommit
    return conn


# A writer of rpacs.retrieval also writes rpacs.study: the triggers of sql/007_web.sql copy each retrieval's state
# into rpacs.study.retrieval_state. Two transactions that each lock several rpacs.study rows, in different orders,
# deadlock (e.g. the census touching the studies of a C-FIND answer while `retrieve` queues targets, each insert
# into rpacs.retrieval then locking its study). Every transaction that writes several rpacs.study rows, directly or
# through rpacs.retrieval, takes this lock first, so they run one after the other. A retrieval worker changing one
# retrieval per transaction does not: holding one study row at a time, it can wait but never close a cycle.
STUDY_WRITES_LOCK = (28269, 700)


def lock_study_writes(conn) -> None:
    """Wait for the other writers of several rpacs.study rows (`STUDY_WRITES_LOCK`) until this transaction ends.
    Call it before the transaction locks any rpacs.study, rpacs.retrieval or jobs.queue row."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", STUDY_WRITES_LOCK)


class ThreadLocalConnection:
    """One connection per thread (worker pools), opened on first use and reopened after it broke."""

    def __init__(self, cfg: Config, role: str = "worker"):
        self.cfg = cfg
        self.role = role
        self._local = threading.local()

    def get(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = connect(self.cfg, role=self.role)
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def json_adapter(value):
    """Wrap a dict/list for a jsonb parameter."""
    return psycopg2.extras.Json(value)
