"""PostgreSQL access: connections, migrations (sql/NNN_*.sql) and the durable job queue."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from nmdose.errors import DatabaseError

if TYPE_CHECKING:
    from nmdose.config import Config


ROLES = ("admin", "owner", "worker", "web", "orthanc")
MAINTENANCE_DATABASE = "postgres"
T = TypeVar("T")


class DatabaseUnreachable(DatabaseError):
    """PostgreSQL could not be reached (an outage, not a fault of the data being written)."""


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
        raise DatabaseUnreachable(
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


# SQLSTATEs of a connection that is gone or going: class 08 (connection exception), and the server shutting down
# or restarting (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now).
_CONNECTION_SQLSTATES = ("57P01", "57P02", "57P03")


def is_connection_error(exc: BaseException) -> bool:
    """True when `exc` means PostgreSQL is unreachable or the connection broke (an outage: retry on a fresh
    connection), False for an error caused by the statement or its data. psycopg2 classes some data errors as
    OperationalError too (e.g. ProgramLimitExceeded), so the SQLSTATE decides: none (libpq lost the server),
    class 08 or a server shutdown."""
    if isinstance(exc, DatabaseUnreachable | psycopg2.InterfaceError):
        return True
    if isinstance(exc, psycopg2.OperationalError):
        code = getattr(exc, "pgcode", None)
        return code is None or code.startswith("08") or code in _CONNECTION_SQLSTATES
    return False


def is_alive(conn) -> bool:
    """A round trip (`SELECT 1`): False when the server closed the connection (e.g. it restarted). Inside an open
    transaction the check runs in it and leaves it open; an aborted transaction is left to its owner."""
    if conn is None or conn.closed:
        return False
    status = conn.info.transaction_status
    if status not in (
        psycopg2.extensions.TRANSACTION_STATUS_IDLE,
        psycopg2.extensions.TRANSACTION_STATUS_INTRANS,
    ):
        return True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        if status == psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            conn.rollback()
        return True
    except psycopg2.Error:
        with contextlib.suppress(Exception):
            conn.close()
        return False


class ThreadLocalConnection:
    """One connection per thread (worker pools), opened on first use, checked before use after `check_after_s`
    idle (a connection broken by a PostgreSQL restart is replaced, not handed out) and reopened after it broke."""

    def __init__(self, cfg: Config, role: str = "worker", *, check_after_s: float = 0.25):
        self.cfg = cfg
        self.role = role
        self.check_after_s = check_after_s
        self._local = threading.local()

    def get(self):
        conn = getattr(self._local, "conn", None)
        now = time.monotonic()
        idle = now - getattr(self._local, "used", 0.0) >= self.check_after_s
        if conn is not None and not conn.closed and idle and not is_alive(conn):
            conn = None
        if conn is None or conn.closed:
            conn = self._local.conn = connect(self.cfg, role=self.role)
        self._local.used = now
        return conn

    def reset(self) -> None:
        """Drop this thread's connection (after a connection error): the next get() opens a new one."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def run(self, work: Callable[..., T], *, retry_s: float = 60.0, delay_s: float = 0.5) -> T:
        """`work(conn)` on this thread's connection; after a connection error (a PostgreSQL restart, an outage)
        retried on a fresh connection, with back-off, for up to `retry_s`; then the error is raised. `work` must be
        one transaction that is safe to run again (it commits itself, or rolled back when the connection broke)."""
        deadline = time.monotonic() + retry_s
        while True:
            try:
                return work(self.get())
            except Exception as exc:
                if not is_connection_error(exc):
                    conn = getattr(self._local, "conn", None)
                    if conn is not None and not conn.closed:
                        with contextlib.suppress(Exception):
                            conn.rollback()
                    raise
                self.reset()
                if time.monotonic() + delay_s > deadline:
                    raise
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def json_adapter(value):
    """Wrap a dict/list for a jsonb parameter."""
    return psycopg2.extras.Json(value)
