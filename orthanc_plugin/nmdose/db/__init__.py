"""PostgreSQL access: connections, migrations (sql/NNN_*.sql) and the durable job queue."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import psycopg2
import psycopg2.extras

from nmdose.errors import DatabaseError

if TYPE_CHECKING:
    from nmdose.config import Config


def connect(cfg: Config, database: str | None = None, *, autocommit: bool = False):
    """A psycopg2 connection to the nmdose database (or `database`), with a clear error when unreachable."""
    pg = cfg.postgresql
    try:
        conn = psycopg2.connect(cfg.dsn(database))
    except psycopg2.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(
            f"PostgreSQL {pg.host}:{pg.port}/{database or pg.database} as {pg.user}: unreachable ({reason})"
        ) from None
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

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._local = threading.local()

    def get(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = connect(self.cfg)
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


def json_adapter(value):
    """Wrap a dict/list for a jsonb parameter."""
    return psycopg2.extras.Json(value)
