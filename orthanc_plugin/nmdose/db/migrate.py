"""Schema migrations: `sql/NNN_name.sql` applied in order, each once, each in its own transaction.

An advisory lock serialises concurrent runs (the plugin at start and the CLI). A migration whose file changed
after it was applied is an error: migrations are append-only.

Migrations run as the owner role (`owner_user`, never a superuser): given a connection of another role made by
:func:`nmdose.db.connect`, :func:`migrate` prepares the database as the bootstrap superuser when its password is
available (local stack), then migrates over its own owner connection and re-applies the runtime roles' grants
(:mod:`nmdose.db.roles`) after the last migration, under the same lock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from nmdose.db.roles import grant_runtime
from nmdose.errors import DatabaseError, SecretError

_LOCK_ID = 0x6E6D646F7365  # "nmdose"
_NAME_RE = re.compile(r"^(\d{3,})_([A-Za-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(migrations_dir: Path) -> list[Migration]:
    """The migration files in order; a file that does not follow NNN_name.sql is an error, not skipped."""
    if not migrations_dir.is_dir():
        raise DatabaseError(f"{migrations_dir}: migrations folder not found")
    found = []
    for path in sorted(migrations_dir.glob("*.sql")):
        m = _NAME_RE.match(path.name)
        if not m:
            raise DatabaseError(f"{path}: expected a migration file named NNN_name.sql")
        found.append(Migration(m[1], m[2], path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise DatabaseError(f"{migrations_dir}: two migrations share a version number")
    return found


def _ensure_table(cur) -> None:
    cur.execute(
        """CREATE TABLE IF NOT EXISTS public.nmdose_migrations (
               version    text PRIMARY KEY,
               name       text NOT NULL,
               checksum   text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )


def applied(conn) -> dict[str, str]:
    """version -> checksum of the migrations recorded in the database."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.nmdose_migrations')")
        if cur.fetchone()[0] is None:
            return {}
        cur.execute("SELECT version, checksum FROM public.nmdose_migrations")
        return dict(cur.fetchall())


def status(conn, migrations_dir: Path) -> dict[str, list[str]]:
    """Which migrations are applied and which are pending."""
    done = applied(conn)
    files = discover(migrations_dir)
    return {
        "applied": [f"{m.version}_{m.name}" for m in files if m.version in done],
        "pending": [f"{m.version}_{m.name}" for m in files if m.version not in done],
    }


def migrate(conn, migrations_dir: Path) -> list[str]:
    """Apply pending migrations as the owner role, then the runtime roles' grants; return the names applied.
    Safe to call concurrently and repeatedly."""
    files = discover(migrations_dir)
    cfg = getattr(conn, "nmdose_cfg", None)
    if cfg is not None and getattr(conn, "nmdose_role", None) != "owner":
        return _migrate_as_owner(conn, cfg, migrations_dir, files)
    done_now: list[str] = []
    old_autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
            try:
                _ensure_table(cur)
                conn.commit()
                done = applied(conn)
                for m in files:
                    if m.version in done:
                        if done[m.version] != m.checksum:
                            raise DatabaseError(
                                f"{m.path}: changed after it was applied (migrations are append-only; "
                                "add a new NNN_*.sql instead)"
                            )
                        continue
                    try:
                        cur.execute(m.path.read_text(encoding="utf-8"))
                        cur.execute(
                            "INSERT INTO public.nmdose_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (m.version, m.name, m.checksum),
                        )
                        conn.commit()
                    except psycopg2.Error as exc:
                        conn.rollback()
                        if cfg is not None:  # what was applied stays usable by the runtime roles
                            grant_runtime(cur, cfg)
                            conn.commit()
                        raise DatabaseError(f"{m.path}: migration failed: {str(exc).strip()}") from None
                    done_now.append(f"{m.version}_{m.name}")
                if cfg is not None:  # after the last migration, so a later one's tables (audit) are covered
                    grant_runtime(cur, cfg)
                    conn.commit()
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
                conn.commit()
    finally:
        conn.autocommit = old_autocommit
    return done_now


def _migrate_as_owner(conn, cfg, migrations_dir: Path, files: list[Migration]) -> list[str]:
    """`migrate` for a connection of another role: over the owner's own connection to the same database."""
    from nmdose.db import connect
    from nmdose.db.roles import prepare_database

    database = conn.info.dbname
    prepare_database(cfg, database)
    try:
        owner = connect(cfg, database, role="owner")
    except SecretError:
        # no owner password at runtime (prod may keep it for `nmdose db migrate` only): fine if nothing is pending
        pending = [f"{m.version}_{m.name}" for m in files if m.version not in applied(conn)]
        conn.rollback()
        if pending:
            raise DatabaseError(
                f"{len(pending)} pending migration(s) ({', '.join(pending)}) and no owner password "
                f"({cfg.postgresql.ROLE_SECRETS['owner']}): run `nmdose db migrate` with it"
            ) from None
        return []
    try:
        return migrate(owner, migrations_dir)
    finally:
        owner.close()
