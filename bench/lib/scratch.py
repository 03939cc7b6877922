"""A throw-away PostgreSQL cluster for the benches that fill a large synthetic database and time queries on it.

``scratch_postgres(prefix)`` makes a temporary folder under /tmp with a test config (free ports), starts the
cluster with the local stack's launcher (``Stack.postgres_up``) and always stops it and removes the folder on the
way out (``postgres_down`` + ``rmtree``), also on an error or a SIGTERM (a ``timeout`` or a CI cancel), unless the
bench set ``keep`` at the end of a successful run (``--keep``: the database stays up for EXPLAIN ANALYZE, see
:meth:`Scratch.kept_message`). Migrating and filling stay with each bench (roles and order differ).
"""

from __future__ import annotations

import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from nmdose.config import Config
from nmdose.db import connect
from nmdose.stack import Stack
from tests.support import load, make_config_dir, make_tempdir


@dataclass
class Scratch:
    root: Path
    cfg: Config
    stack: Stack
    keep: bool = False  # set at the end of a successful run to leave the cluster running

    def kept_message(self) -> str:
        """How to reach and stop a kept cluster (no password: it is in the var dir's secrets.env)."""
        pg = self.cfg.postgresql
        return (
            f"kept: psql 'host={pg.host} port={pg.port} dbname={pg.database} user={pg.user}' "
            f"(password in {self.cfg.var_dir}/secrets.env); stop: pg_ctl -D {self.stack.pg_data} stop "
            f"(as postgres when root); then rm -rf {self.root}"
        )


@contextmanager
def scratch_postgres(prefix: str) -> Iterator[Scratch]:
    """A running throw-away cluster in a new /tmp folder named ``prefix...``; stopped and removed afterwards."""
    main = threading.current_thread() is threading.main_thread()
    if main:  # a SIGTERM exits through the clean-up below (after the statement running, if any)
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = make_tempdir(prefix)
    cfg = load(make_config_dir(root))
    scratch = Scratch(root, cfg, Stack(cfg))
    try:
        (cfg.var_dir / "log").mkdir(parents=True, exist_ok=True)
        scratch.stack.postgres_up()
        yield scratch
    finally:
        try:
            if not scratch.keep:
                try:
                    scratch.stack.postgres_down()
                finally:
                    shutil.rmtree(root, ignore_errors=True)
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)


def relax_checkpoints(cfg: Config) -> None:
    """Fewer checkpoints while a throw-away server is filled (no effect on the queries timed afterwards)."""
    with closing(connect(cfg, role="admin", autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
        cur.execute("ALTER SYSTEM SET checkpoint_timeout = '30min'")
        cur.execute("SELECT pg_reload_conf()")


def vacuum_analyze(conn) -> None:
    """VACUUM (ANALYZE) the whole database after a bulk fill (outside a transaction; the connection's autocommit
    setting is put back afterwards). The caller commits the fill first."""
    before = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("VACUUM (ANALYZE)")
    finally:
        conn.autocommit = before


def dose_counts(conn) -> tuple[int, int, int]:
    """(dose.study, dose.ct_event, dose.radiopharmaceutical) row counts."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM dose.study), (SELECT count(*) FROM dose.ct_event),"
            " (SELECT count(*) FROM dose.radiopharmaceutical)"
        )
        return cur.fetchone()


def stop_audit_writer(plugin) -> None:
    """Stop a Plugin's audit writer (when it has one), so its rows are written before the database stops."""
    writer = getattr(plugin, "audit_writer", None)
    if writer is not None:
        writer.stop()
